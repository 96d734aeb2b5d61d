package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/launchready/launchready/internal/alerts"
	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/ops"
)

func init() {
	register("ops", "serve the ops page (/ops/) alone: numbers, charts, open mismatches, customer timelines", runOps)
}

func runOps(ctx context.Context, args []string) error {
	cfg, fs, err := loadConfig("ops", args, config.NeedClickHouse|config.NeedHTTP, nil)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if !cfg.OpsToken.Set() {
		return errors.New("LR_OPS_TOKEN is empty: set a token (the page refuses every request without one)")
	}
	log := newLogger(cfg)
	conn, err := chdb.Open(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close()
	health := obs.NewHealth()
	health.Add("clickhouse", app.ClickHouseCheck(conn))
	mux := health.Mux()
	var opt ops.Options
	if len(cfg.KafkaBrokers) > 0 {
		opt.Backlog = alerts.NewKafkaBacklog(cfg.KafkaBrokers, cfg.TopicPrefix)
	}
	if err := ops.Register(mux, cfg, conn, log, opt); err != nil {
		return err
	}
	return obs.Serve(ctx, obs.Component(log, "ops"), cfg.HTTPAddr, mux, cfg.ShutdownTimeout)
}
