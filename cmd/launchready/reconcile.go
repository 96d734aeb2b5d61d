package main

import (
	"context"
	"errors"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/reconcile"
)

func init() {
	register("reconcile", "join every source into one identity and entitlement per customer; find mismatches", runReconcile)
}

func runReconcile(ctx context.Context, args []string) error {
	cfg, _, err := loadConfig("reconcile", args, config.NeedKafka|config.NeedHTTP, nil)
	if err != nil {
		return err
	}
	settings, err := reconcile.SettingsFromEnv()
	if err != nil {
		return err
	}
	log := newLogger(cfg)
	health := obs.NewHealth()
	env := &app.Env{Cfg: cfg, Log: log, Health: health, Mux: health.Mux()}
	stage, err := reconcile.New(env, reconcile.Options{Settings: settings})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	httpErr := make(chan error, 1)
	go func() {
		httpErr <- obs.Serve(ctx, obs.Component(log, "http"), cfg.HTTPAddr, env.Mux, cfg.ShutdownTimeout)
	}()
	runErr := stage.Run(ctx)
	cancel()
	if err := <-httpErr; err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return nil
}

func init() {
	addStage("reconcile", func(ctx context.Context, d *deps) (app.Stage, error) {
		settings, err := reconcile.SettingsFromEnv()
		if err != nil {
			return nil, err
		}
		return reconcile.New(d.env, reconcile.Options{Settings: settings})
	})
}
