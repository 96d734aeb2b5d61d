package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/ingest"
	"github.com/launchready/launchready/internal/alerts"
	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/httpx"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/migrate"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/ops"
	"github.com/launchready/launchready/internal/pg"
	"github.com/launchready/launchready/sinks/circle"
)

func init() {
	register("run", "run every stage in one process: ingest, cdc, reconcile, audit, sinks, ops page", runAll)
}

// deps are the connections stages share in one process.
type deps struct {
	env      *app.Env
	producer *kafka.Producer
	state    *pgxpool.Pool // launchready's own state
	ch       driver.Conn   // ClickHouse on the audit database
	// Circle counts requests per client (2,000 / 5 min) and per month: the
	// poller and the sink share one limiter and one budget.
	circleLimiter *httpx.Limiter
	circleBudget  *httpx.Budget
}

// stageFactory builds one stage from the shared deps. A factory that returns
// (nil, nil) means the stage is not configured (e.g. no Kit API key) and is skipped.
type stageFactory struct {
	name string
	make func(ctx context.Context, d *deps) (app.Stage, error)
}

// stages is every stage `run` composes, in start order; the stage files of
// this package add theirs in init.
var stages []stageFactory

func addStage(name string, make func(ctx context.Context, d *deps) (app.Stage, error)) {
	stages = append(stages, stageFactory{name: name, make: make})
}

// openDeps connects to everything a stage may need and registers the
// readiness checks of each connection.
func openDeps(ctx context.Context, cfg *config.Config, log *slog.Logger) (*deps, func(), error) {
	health := obs.NewHealth()
	env := &app.Env{Cfg: cfg, Log: log, Health: health, Mux: health.Mux()}
	state, err := pg.Connect(ctx, cfg.StatePostgresURL, "state database")
	if err != nil {
		return nil, nil, err
	}
	if err := migrate.All(ctx, log, cfg, state); err != nil {
		state.Close()
		return nil, nil, fmt.Errorf("migrate: %w", err)
	}
	ch, err := chdb.Open(ctx, cfg, cfg.ClickHouseDatabase)
	if err != nil {
		state.Close()
		return nil, nil, err
	}
	// Ingest's options (a 10 ms linger) batch concurrent webhooks best; the
	// other stages write batches of their own and are indifferent to it.
	producer := kafka.NewProducer(cfg.KafkaBrokers, ingest.ProducerOptions)
	health.Add("kafka", app.KafkaCheck(cfg.KafkaBrokers))
	health.Add("postgres", app.PostgresCheck(state, "state database"))
	health.Add("clickhouse", app.ClickHouseCheck(ch))
	if cfg.OpsToken.Set() {
		if err := ops.Register(env.Mux, cfg, ch, log, ops.Options{Backlog: alerts.NewKafkaBacklog(cfg.KafkaBrokers, cfg.TopicPrefix)}); err != nil {
			producer.Close()
			ch.Close()
			state.Close()
			return nil, nil, fmt.Errorf("ops page: %w", err)
		}
	} else {
		log.Info("ops page off: LR_OPS_TOKEN is empty")
	}
	closeAll := func() {
		producer.Close()
		ch.Close()
		state.Close()
	}
	return &deps{env: env, producer: producer, state: state, ch: ch,
		circleLimiter: circle.NewLimiter(circle.RateLimit, circle.RateWindow),
		circleBudget:  httpx.NewBudget(cfg.CircleMonthlyQuota, log, httpx.BudgetMetric("circle")),
	}, closeAll, nil
}

func runAll(ctx context.Context, args []string) error {
	cfg, _, err := loadConfig("run", args, config.NeedKafka|config.NeedPostgres|config.NeedStatePostgres|config.NeedClickHouse|config.NeedHTTP, nil)
	if err != nil {
		return err
	}
	log := newLogger(cfg)
	d, closeDeps, err := openDeps(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeDeps()
	var running []app.Stage
	for _, f := range stages {
		s, err := f.make(ctx, d)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		if s == nil {
			log.Info("stage not configured, skipped", "stage", f.name)
			continue
		}
		running = append(running, s)
	}
	return serveStages(ctx, log, cfg, d.env.Mux, running)
}

// serveStages runs the HTTP server and every stage until ctx ends or one of
// them fails; then it cancels the rest and waits for them under the shutdown
// deadline, so each can drain, flush and make its final acknowledgement.
func serveStages(ctx context.Context, log *slog.Logger, cfg *config.Config, mux http.Handler, running []app.Stage) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	errs := make(chan error, len(running)+1)
	start := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := fn(ctx)
			if err != nil && ctx.Err() == nil {
				err = fmt.Errorf("%s: %w", name, err)
				log.Error("stage failed: stopping the pipeline", "stage", name, "err", err)
				errs <- err
				cancel(err)
				return
			}
			if err == nil && ctx.Err() == nil {
				// A stage that returns without being asked to stop is a failure of the whole.
				err = fmt.Errorf("%s stopped unexpectedly", name)
				log.Error("stage stopped unexpectedly: stopping the pipeline", "stage", name)
				errs <- err
				cancel(err)
			}
		}()
	}
	for _, s := range running {
		log.Info("stage starting", "stage", s.Name())
		start(s.Name(), s.Run)
	}
	start("http", func(ctx context.Context) error {
		return obs.Serve(ctx, log.With("component", "http"), cfg.HTTPAddr, mux, cfg.ShutdownTimeout)
	})
	<-ctx.Done()
	log.Info("shutting down", "deadline", cfg.ShutdownTimeout.String())
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.ShutdownTimeout):
		return errors.New("shutdown deadline passed with stages still running")
	}
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}
