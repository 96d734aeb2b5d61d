package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/launchready/launchready/ingest/cdc"
	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/obs"
)

func init() {
	register("cdc", "stream the app database's row changes into Kafka (logical replication)", runCDC)
}

// tableList is a repeatable flag of schema.table names.
type tableList []string

func (l *tableList) String() string { return strings.Join(*l, ",") }
func (l *tableList) Set(v string) error {
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			*l = append(*l, t)
		}
	}
	return nil
}

func runCDC(ctx context.Context, args []string) error {
	var opt cdc.Options
	var snapshot tableList
	cfg, _, err := loadConfig("cdc", args, config.NeedKafka|config.NeedPostgres|config.NeedStatePostgres|config.NeedHTTP, func(fs *flag.FlagSet) {
		fs.BoolVar(&opt.Resnapshot, "resnapshot", false, "when the replication slot vanished, create it again and snapshot every table anew")
		fs.Var(&snapshot, "snapshot-table", "snapshot this schema.table again on start (repeatable, or comma-separated)")
		fs.DurationVar(&opt.HeartbeatInterval, "heartbeat-interval", 10*time.Second, "how often a heartbeat message keeps an idle slot advancing")
	})
	if err != nil {
		return err
	}
	opt.SnapshotTables = snapshot
	log := newLogger(cfg)
	health := obs.NewHealth()
	env := &app.Env{Cfg: cfg, Log: log, Health: health, Mux: health.Mux()}
	stage, err := cdc.New(env, opt)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	httpErr := make(chan error, 1)
	go func() {
		httpErr <- obs.Serve(ctx, obs.Component(log, "http"), cfg.HTTPAddr, env.Mux, cfg.ShutdownTimeout)
	}()
	runErr := make(chan error, 1)
	go func() { runErr <- stage.Run(ctx) }()
	select {
	case err := <-runErr:
		cancel()
		<-httpErr
		return err
	case err := <-httpErr:
		// The HTTP server stopped first: on shutdown that is expected; else
		// it failed (e.g. the address is taken) and the stage stops too.
		cancel()
		if rerr := <-runErr; rerr != nil {
			return rerr
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	}
}

func init() {
	addStage("cdc", func(ctx context.Context, d *deps) (app.Stage, error) {
		return cdc.New(d.env, cdc.Options{})
	})
}
