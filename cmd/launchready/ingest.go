package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/launchready/launchready/ingest"
	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/pg"
)

func init() {
	register("ingest", "receive Stripe, Kit and Circle webhooks and poll Circle into Kafka; `ingest backfill stripe --since 72h` replays Stripe events", runIngest)
	addStage("ingest", func(ctx context.Context, d *deps) (app.Stage, error) {
		rcv, err := ingest.New(d.env, d.producer, d.state)
		if err != nil {
			return nil, err
		}
		return rcv, nil
	})
	addStage("ingest.circle_poller", func(ctx context.Context, d *deps) (app.Stage, error) {
		cfg := d.env.Cfg
		if !cfg.CircleAPIToken.Set() || cfg.CirclePollInterval <= 0 {
			return nil, nil
		}
		// Poll keys never collide with webhook keys, so a window of its own
		// over the same table is enough.
		p, err := ingest.NewPoller(d.env, d.producer, d.state, ingest.NewDedup(d.state, cfg.DedupWindow, d.env.Log),
			ingest.PollerOptions{Limiter: d.circleLimiter, Budget: d.circleBudget})
		if err != nil {
			return nil, err
		}
		return p, nil
	})
}

func runIngest(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "backfill" {
		return runBackfill(ctx, args[1:])
	}
	cfg, _, err := loadConfig("ingest", args, config.NeedKafka|config.NeedStatePostgres|config.NeedHTTP, nil)
	if err != nil {
		return err
	}
	base := newLogger(cfg)
	log := obs.Component(base, "ingest")
	pool, err := pg.Connect(ctx, cfg.StatePostgresURL, "state database")
	if err != nil {
		return err
	}
	defer pool.Close()
	producer := kafka.NewProducer(cfg.KafkaBrokers, ingest.ProducerOptions)
	defer producer.Close()

	health := obs.NewHealth()
	env := &app.Env{Cfg: cfg, Log: base, Health: health, Mux: health.Mux()}
	rcv, err := ingest.New(env, producer, pool)
	if err != nil {
		return err
	}
	stages := []app.Stage{rcv}
	if cfg.CircleAPIToken.Set() && cfg.CirclePollInterval > 0 {
		poller, err := ingest.NewPoller(env, producer, pool, rcv.Dedup(), ingest.PollerOptions{})
		if err != nil {
			return err
		}
		stages = append(stages, poller)
	} else {
		log.Info("Circle poller off (LR_CIRCLE_API_TOKEN unset or LR_CIRCLE_POLL_INTERVAL 0)")
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(stages)+1)
	for _, s := range stages {
		wg.Go(func() {
			if err := s.Run(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", s.Name(), err)
				cancel()
			}
		})
	}
	// The server drains in-flight requests on shutdown: each finishes its
	// Kafka write and answers before the producer is closed.
	err = obs.Serve(ctx, log, cfg.HTTPAddr, env.Mux, cfg.ShutdownTimeout)
	cancel()
	wg.Wait()
	fctx, fcancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer fcancel()
	err = errors.Join(err, rcv.Flush(fctx))
	log.Info("ingest stopped")
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	return err
}

func runBackfill(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "stripe" {
		return errors.New("usage: launchready ingest backfill stripe --since 72h [--types invoice.paid,…]")
	}
	var since time.Duration
	var types string
	cfg, _, err := loadConfig("ingest backfill stripe", args[1:], config.NeedKafka|config.NeedStatePostgres, func(fs *flag.FlagSet) {
		fs.DurationVar(&since, "since", 72*time.Hour, "replay events created within this long before now (at most 720h: Stripe keeps 30 days)")
		fs.StringVar(&types, "types", "", "only these event types, comma-separated (at most 20)")
	})
	if err != nil {
		return err
	}
	if since <= 0 || since > ingest.StripeEventRetention {
		return fmt.Errorf("--since must be between 1s and %s (Stripe keeps events for 30 days)", ingest.StripeEventRetention)
	}
	log := newLogger(cfg)
	pool, err := pg.Connect(ctx, cfg.StatePostgresURL, "state database")
	if err != nil {
		return err
	}
	defer pool.Close()
	producer := kafka.NewProducer(cfg.KafkaBrokers, ingest.ProducerOptions)
	defer producer.Close()

	start := time.Now()
	opt := ingest.BackfillOptions{
		Since: start.Add(-since),
		Types: splitList(types),
		Progress: func(p ingest.BackfillProgress) {
			oldest := "-"
			if !p.Oldest.IsZero() {
				oldest = p.Oldest.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(os.Stderr, "backfill stripe: %3.0f%%  page %d  events %d (new %d, duplicates %d, unreadable %d)  back to %s  %s\n",
				100*p.Fraction(time.Now()), p.Pages, p.Events, p.New, p.Duplicates, p.Invalid, oldest, time.Since(start).Round(100*time.Millisecond))
		},
	}
	b, err := ingest.NewBackfill(cfg, log, producer, ingest.NewDedup(pool, cfg.DedupWindow, log), opt)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "backfill stripe: replaying events created since %s into %s\n", opt.Since.UTC().Format(time.RFC3339), cfg.Topic("raw.stripe"))
	return b.Run(ctx)
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
