package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/httpx"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/schemas"
	"github.com/launchready/launchready/sinks"
	"github.com/launchready/launchready/sinks/circle"
	"github.com/launchready/launchready/sinks/kit"
)

func init() {
	register("sink", "push entitlements to Circle and Kit, differences only (--dry-run prints them instead)", runSink)
	addStage("sink", func(ctx context.Context, d *deps) (app.Stage, error) {
		cfg, log := d.env.Cfg, obs.Component(d.env.Log, "sink")
		m, err := mapping.Resolve(cfg.MappingFile)
		if err != nil {
			return nil, err
		}
		providers, err := sinkProviders(cfg, m, log, "", d.circleLimiter, d.circleBudget)
		if err != nil || len(providers) == 0 {
			return nil, err
		}
		return sinks.New(d.env, m, sinks.Options{DryRun: cfg.SinkDryRun, Log: log}, d.producer, providers...)
	})
}

func runSink(ctx context.Context, args []string) error {
	var dry bool
	var only string
	cfg, _, err := loadConfig("sink", args, config.NeedKafka|config.NeedHTTP, func(fs *flag.FlagSet) {
		fs.BoolVar(&dry, "dry-run", false, "diff every customer up to the end of the entitlements topic, print and record the would-be actions, make no write call, and exit")
		fs.StringVar(&only, "provider", "", "sync only this provider: circle or kit (default: every provider with credentials)")
	})
	if err != nil {
		return err
	}
	log := obs.Component(newLogger(cfg), "sink")
	m, err := mapping.Resolve(cfg.MappingFile)
	if err != nil {
		return err
	}
	providers, err := sinkProviders(cfg, m, log, only, nil, nil)
	if err != nil {
		return err
	}
	health := obs.NewHealth()
	env := &app.Env{Cfg: cfg, Log: log, Health: health, Mux: health.Mux()}
	brokers := kafka.NewClient(cfg.KafkaBrokers)
	health.Add("kafka", brokers.Ping)
	o := sinks.Options{DryRun: dry || cfg.SinkDryRun, Log: log}
	if dry {
		o.OnResult = printer(m)
	}
	stage, err := sinks.New(env, m, o, nil, providers...)
	if err != nil {
		return err
	}
	if dry {
		err := stage.DiffAll(ctx)
		for _, w := range stage.Workers() {
			st := w.Stats()
			fmt.Printf("%s: %d customers, %d would change, %d in sync, %d skipped\n", w.Provider().Name(), st.Customers, st.Changed, st.Noop, st.Skipped)
		}
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var httpErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if httpErr = obs.Serve(ctx, log, cfg.HTTPAddr, env.Mux, cfg.ShutdownTimeout); httpErr != nil {
			cancel()
		}
	}()
	err = stage.Run(ctx)
	cancel()
	wg.Wait()
	return errors.Join(err, httpErr)
}

// sinkProviders builds the providers to sync: only, or every one whose
// credentials are set.
// sinkProviders returns the configured sinks; the Circle limiter and budget
// may be shared with the Circle poller (nil: the sink's own).
func sinkProviders(cfg *config.Config, m *mapping.Mapping, log *slog.Logger, only string, circleLim *httpx.Limiter, circleBudget *httpx.Budget) ([]sinks.Provider, error) {
	var out []sinks.Provider
	want := func(name string, configured bool) bool {
		if only == "" {
			if !configured {
				log.Warn("provider not configured; not syncing it", "provider", name)
			}
			return configured
		}
		return only == name
	}
	switch only {
	case "", schemas.ProviderKit, schemas.ProviderCircle:
	default:
		return nil, fmt.Errorf("--provider: %q is not circle or kit", only)
	}
	if want(schemas.ProviderKit, cfg.KitAPIKey.Set()) {
		p, err := kit.FromConfig(cfg, log)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if want(schemas.ProviderCircle, cfg.CircleAPIToken.Set()) {
		p, err := circle.FromConfig(cfg, m, log, circleLim, circleBudget)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// printer returns the dry run's printout: one line per would-be action,
// with the mapping's names of tags and access groups.
func printer(m *mapping.Mapping) func(schemas.SinkResult) {
	names := map[string]string{}
	add := func(provider string, refs []mapping.Ref) {
		for _, r := range refs {
			names[provider+" "+strconv.FormatInt(r.ID, 10)] = r.Name
		}
	}
	d := m.Desired(&schemas.Entitlement{}, time.Time{})
	add(schemas.ProviderKit, d.ManagedKit)
	add(schemas.ProviderCircle, d.ManagedCircle)
	add(schemas.ProviderCircle, d.ManagedCircleGroups)
	var mu sync.Mutex
	return func(r schemas.SinkResult) {
		target := r.Target
		if n, ok := names[r.Provider+" "+target]; ok {
			target += " (" + n + ")"
		}
		if target == "" {
			target = "-"
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, "%s\t%-7s %-20s %-40s %s\n", r.Provider, r.Status, r.Action, target, r.CustomerID+" <"+r.Email+">")
	}
}
