package sinks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/internal/obs"
)

var (
	actions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_sink_actions_total", Help: "Sink actions by provider, action and status (ok, error, dlq, noop, dry_run, skipped).",
	}, []string{"provider", "action", "status"})
	customers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_sink_customers_total", Help: "Customers synced by provider and outcome (changed, noop, dlq, skipped, dry_run).",
	}, []string{"provider", "outcome"})
	superseded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_sink_superseded_total", Help: "Entitlement records skipped because a newer version of the customer was seen.",
	}, []string{"provider"})
	retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_sink_customer_retries_total", Help: "Customer syncs retried after a transient failure.",
	}, []string{"provider"})
	syncSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "launchready_sink_sync_seconds", Help: "Time to sync one customer, rate-limit waits included.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	}, []string{"provider"})
)

func init() { obs.Registry.MustRegister(actions, customers, superseded, retries, syncSeconds) }

// Stage runs one Worker per provider: `launchready sink`, and the sink part
// of `launchready run`.
type Stage struct {
	env     *app.Env
	workers []*Worker
	own     *kafka.Producer // closed by Run when the stage made it
}

// New returns the sink stage for the given providers and registers one
// readiness check per provider ("sink.kit", "sink.circle"). out receives
// results and dead letters; nil makes a producer of the stage's own.
func New(env *app.Env, m *mapping.Mapping, o Options, out Producer, providers ...Provider) (*Stage, error) {
	if len(providers) == 0 {
		return nil, errors.New("sink: no provider to sync (set LR_KIT_API_KEY and/or LR_CIRCLE_API_TOKEN)")
	}
	if o.Log == nil {
		o.Log = env.Log
	}
	s := &Stage{env: env}
	if out == nil {
		s.own = kafka.NewProducer(env.Cfg.KafkaBrokers, kafka.WriterOptions{})
		out = s.own
	}
	for _, p := range providers {
		w := NewWorker(env.Cfg, m, p, out, o)
		env.Health.Add(w.stage, w.Ready)
		s.workers = append(s.workers, w)
	}
	return s, nil
}

// Name is the stage's component name.
func (s *Stage) Name() string { return "sink" }

// Workers returns the stage's workers (for tests and benchmarks).
func (s *Stage) Workers() []*Worker { return s.workers }

// Run syncs until ctx ends; the first worker to fail stops the others.
func (s *Stage) Run(ctx context.Context) error {
	return s.each(ctx, (*Worker).Run)
}

// DiffAll diffs every customer up to the current end of lr.entitlements
// once, records the would-be actions (status dry_run) and returns: the
// founder's look before the first real sync. It needs Options.DryRun.
func (s *Stage) DiffAll(ctx context.Context) error {
	return s.each(ctx, (*Worker).DiffAll)
}

func (s *Stage) each(ctx context.Context, run func(*Worker, context.Context) error) error {
	if s.own != nil {
		defer s.own.Close()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	errs := make([]error, len(s.workers))
	for i, w := range s.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = run(w, ctx); errs[i] != nil {
				cancel(errs[i])
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Run checks the provider account against the mapping, then consumes
// lr.entitlements in the provider's consumer group until ctx ends. A dry
// run consumes in a group of its own, so it never moves the real sync's
// offsets.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.check(ctx); err != nil {
		return err
	}
	c := kafka.NewConsumer(kafka.ConsumerOptions{
		Brokers: w.cfg.KafkaBrokers, GroupID: w.GroupID(), Topics: []string{w.cfg.Topic("entitlements")},
		MaxBatch: 100, MaxWait: 200 * time.Millisecond, Log: w.log,
	})
	defer c.Close()
	w.log.InfoContext(ctx, "sink started", "group", w.GroupID(), "dry_run", w.opt.DryRun)
	err := c.Run(ctx, w.Handle)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// DiffAll diffs every customer's newest entitlement up to the topic's
// current end, records each would-be action (status dry_run) and returns.
// It makes no write call and commits no consumer offset.
func (w *Worker) DiffAll(ctx context.Context) error {
	if !w.opt.DryRun {
		return fmt.Errorf("%s: DiffAll is a dry run; set Options.DryRun", w.stage)
	}
	if err := w.check(ctx); err != nil {
		return err
	}
	var batch []kafka.Message
	if err := kafka.ReadToEnd(ctx, w.cfg.KafkaBrokers, w.cfg.Topic("entitlements"), func(m kafka.Message) error {
		batch = append(batch, m)
		return nil
	}); err != nil {
		return fmt.Errorf("%s: dry run: %w", w.stage, err)
	}
	w.log.InfoContext(ctx, "dry run", "records", len(batch))
	return w.Handle(ctx, batch)
}

// check runs the provider's Checker, retrying transient failures; a
// missing object, a permanent answer or rejected credentials stop it.
func (w *Worker) check(ctx context.Context) error {
	c, ok := w.p.(Checker)
	if !ok {
		return nil
	}
	for attempt := 0; ; attempt++ {
		err := c.Check(ctx, w.m)
		if err == nil {
			w.setBlocked(nil)
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if fatal, permanent := classify(err); fatal || permanent || errors.Is(err, ErrMissing) {
			return fmt.Errorf("%s: %w", w.stage, w.fatalOr(err))
		}
		w.setBlocked(err)
		wait := w.backoff(attempt)
		w.log.WarnContext(ctx, "provider check failed; will retry", "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}
