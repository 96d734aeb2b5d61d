package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/internal/pg"
	"github.com/launchready/launchready/simulate/traffic"
)

// runTraffic is `launchready simulate traffic`: synthetic customers against a
// running pipeline — signups into the app database and signed Stripe
// webhooks, duplicated and out of order — and, with --expected, the true
// final state of every customer as JSON. (The demo and the end-to-end tests
// also play the customers' Kit and Circle sides, against simulators they run
// in process.)
func runTraffic(ctx context.Context, args []string) error {
	var n int
	var dup float64
	var seed uint64
	var base, expected string
	cfg, _, err := loadConfig("simulate traffic", args, config.NeedPostgres, func(fs *flag.FlagSet) {
		fs.IntVar(&n, "customers", 50, "synthetic customers")
		fs.Float64Var(&dup, "duplicates", 0.1, "fraction of Stripe events delivered twice")
		fs.Uint64Var(&seed, "seed", uint64(time.Now().UnixNano()), "seed of the population")
		fs.StringVar(&base, "target", "", "the pipeline's base URL (default http://LR_HTTP_ADDR)")
		fs.StringVar(&expected, "expected", "", "write every customer's true final state to this JSON file")
	})
	if err != nil {
		return err
	}
	if n < 1 || dup < 0 || dup > 1 {
		return fmt.Errorf("--customers must be at least 1 and --duplicates within [0, 1]")
	}
	if !cfg.StripeWebhookSecret.Set() {
		return fmt.Errorf("LR_STRIPE_WEBHOOK_SECRET is empty: set the secret the pipeline verifies Stripe webhooks with")
	}
	if base == "" {
		base = "http://" + cfg.HTTPAddr
	}
	m, err := mapping.Resolve(cfg.MappingFile)
	if err != nil {
		return err
	}
	prices := map[string]string{}
	for _, p := range m.Plans {
		if len(p.Prices) > 0 {
			prices[p.Name] = p.Prices[0]
		}
	}
	app, err := pg.Connect(ctx, cfg.PostgresURL, "app database")
	if err != nil {
		return err
	}
	defer app.Close()
	runID := strconv.FormatInt(time.Now().Unix()%1_000_000_000, 36)
	customers := traffic.Generate(traffic.Population{N: n, Seed: seed, RunID: runID, Now: time.Now(), Prices: prices})
	rep, err := traffic.Drive(ctx, traffic.Options{WebhookBase: base, StripeSecret: cfg.StripeWebhookSecret.Reveal(), App: app,
		Duplicates: dup, OutOfOrder: true, Seed: seed, Progress: progress(os.Stderr, "traffic", n)}, customers)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return err
	}
	fmt.Printf("%d customers: %d webhooks (%d duplicate deliveries, %d retries after an error, %d failed), p50 %.1f ms, p95 %.1f ms\n",
		rep.Customers, rep.Webhooks, rep.Duplicates, rep.Retries, rep.Failed, rep.P50MS, rep.P95MS)
	if expected != "" {
		out := make([]traffic.Expected, 0, len(customers))
		for _, c := range customers {
			out = append(out, c.Expected())
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(expected, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("--expected: %w", err)
		}
		fmt.Printf("expected final states written to %s\n", expected)
	}
	return nil
}
