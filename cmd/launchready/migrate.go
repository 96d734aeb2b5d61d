package main

import (
	"context"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/migrate"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/pg"
)

func init() {
	register("migrate", "create the Kafka topics and apply the Postgres and ClickHouse DDL (safe to repeat)", runMigrate)
}

func runMigrate(ctx context.Context, args []string) error {
	cfg, _, err := loadConfig("migrate", args, config.NeedKafka|config.NeedStatePostgres|config.NeedClickHouse, nil)
	if err != nil {
		return err
	}
	log := obs.Component(newLogger(cfg), "migrate")
	pool, err := pg.Connect(ctx, cfg.StatePostgresURL, "state database")
	if err != nil {
		return err
	}
	defer pool.Close()
	return migrate.All(ctx, log, cfg, pool)
}
