package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/launchready/launchready/internal/alerts"
	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/pg"
)

func init() {
	register("alerts", "evaluate the alert rules over ClickHouse, Kafka and Postgres and post transitions to LR_ALERT_WEBHOOK_URL", runAlerts)
}

const alertsUsage = `launchready alerts [--interval 1m]   evaluate every interval and post firing/resolved transitions
launchready alerts --once            evaluate once and print what fires (exit status 3 when something fires)
launchready alerts --print-rules     print the Prometheus rule file for the current LR_ALERT_* thresholds
Thresholds come from LR_ALERT_* variables (see --help-thresholds); posts go to LR_ALERT_WEBHOOK_URL.`

func runAlerts(ctx context.Context, args []string) error {
	th, err := alerts.LoadThresholds()
	if err != nil {
		return err
	}
	var once, printRules, helpThresholds, asJSON bool
	cfg, fs, err := loadConfig("alerts", args, config.NeedClickHouse, func(fs *flag.FlagSet) {
		fs.BoolVar(&once, "once", false, "evaluate once, print the result and exit")
		fs.DurationVar(&th.Interval, "interval", th.Interval, "time between evaluations ($LR_ALERT_INTERVAL)")
		fs.BoolVar(&printRules, "print-rules", false, "print the Prometheus rule file for these thresholds and exit")
		fs.BoolVar(&helpThresholds, "help-thresholds", false, "list the LR_ALERT_* thresholds and exit")
		fs.BoolVar(&asJSON, "json", false, "with --once: print JSON")
		fs.Usage = func() { fmt.Fprintln(fs.Output(), alertsUsage+"\n\nflags:"); fs.PrintDefaults() }
	})
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v\n%s", fs.Args(), alertsUsage)
	}
	if err := th.Validate(); err != nil {
		return err
	}
	switch {
	case helpThresholds:
		for _, s := range alerts.ThresholdSettings() {
			fmt.Printf("%-34s %-10s %s\n", s.Env, s.Default, s.Help)
		}
		return nil
	case printRules:
		b, err := alerts.RenderRules(th)
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(b)
		return err
	}
	log := obs.Component(newLogger(cfg), "alerts")
	conn, err := chdb.Open(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close()
	src := alerts.Sources{CH: conn, DB: cfg.ClickHouseDatabase, TopicPrefix: cfg.TopicPrefix}
	if len(cfg.KafkaBrokers) > 0 {
		src.Backlog = alerts.NewKafkaBacklog(cfg.KafkaBrokers, cfg.TopicPrefix)
	}
	if pool, err := pg.Connect(ctx, cfg.PostgresURL, "app database"); err == nil {
		defer pool.Close()
		src.SlotLag = &alerts.PostgresSlotLag{Pool: pool, Slots: []string{cfg.CDCSlot}}
	} else {
		log.WarnContext(ctx, "replication slot lag is not watched", "err", err)
	}
	if th.MetricsURL != "" && th.MetricsURL != "off" {
		src.Rejected = alerts.NewMetricsScraper(th.MetricsURL)
	}
	if cfg.AlertWebhookURL == "" {
		log.WarnContext(ctx, "LR_ALERT_WEBHOOK_URL is empty: transitions are only logged")
	}
	e, err := alerts.New(th, src, alerts.NewNotifier(cfg.AlertWebhookURL, 10*time.Second), log)
	if err != nil {
		return err
	}
	if !once {
		log.InfoContext(ctx, "evaluating alert rules", "interval", th.Interval.String())
		return e.Run(ctx)
	}
	_, tickErr := e.Tick(ctx, time.Now())
	st := e.Statuses()
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
	} else if len(st) == 0 {
		fmt.Println("nothing fires")
	} else {
		for _, s := range st {
			fmt.Printf("%-9s %s %s: %s\n", strings.ToUpper(s.State), s.Alert, s.Labels, s.Text)
		}
	}
	if tickErr != nil {
		return tickErr
	}
	for _, s := range st {
		if s.State == alerts.StateFiring {
			os.Exit(3)
		}
	}
	return nil
}
