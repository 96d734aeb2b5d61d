package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/httpx"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/schemas"
)

// Envelope names of the records a sink writes (the lr-envelope header).
const (
	EnvelopeSinkResult = "sink_result/1"
	EnvelopeDeadLetter = "dead_letter/1"
)

// ErrRejected means the provider refused the credential (401) or the account
// (403): no record can succeed, so the worker stops instead of dead-lettering
// every customer.
var ErrRejected = errors.New("provider rejected the credentials")

// ErrMissing means the mapping names a tag, group or field the provider
// account does not have (returned by a Checker).
var ErrMissing = errors.New("mapping names objects the provider account does not have")

// Producer is where results and dead letters go; *kafka.Producer is one.
type Producer interface {
	// Write blocks until every message is durable.
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// Options tunes a Worker; the zero value is the default.
type Options struct {
	// DryRun computes and records diffs (status dry_run) without writes.
	DryRun bool
	// Concurrency is how many customers sync at once (default 4). The
	// provider's rate limiter, not this, bounds the request rate.
	Concurrency int
	// RetryMin and RetryMax bound the wait before a customer whose sync
	// failed transiently (after the HTTP client's own retries) is tried again.
	RetryMin, RetryMax time.Duration
	// Drain is how long in-flight customers may finish after shutdown began
	// (default: half the config's shutdown timeout, leaving the rest for
	// writing their results).
	Drain time.Duration
	// Group prefixes the consumer groups (default "<topic prefix>sink"):
	// a new prefix replays the whole topic.
	Group string
	// Now stamps results and the Circle "last synced" field.
	Now func() time.Time
	// OnResult, if set, sees every result once it is durable (the dry-run
	// printout uses it).
	OnResult func(schemas.SinkResult)
	Log      *slog.Logger
}

// Stats counts a worker's work since it started.
type Stats struct {
	Customers, Changed, Noop, Skipped, Superseded int64
	// Actions counts writes that succeeded; Changes the desired items they
	// brought about (see Action.Changes).
	Actions, Changes, DeadLetters, Retries int64
}

type stats struct {
	customers, changed, noop, skipped, superseded, actions, changes, dead, retries atomic.Int64
}

// Worker syncs one provider from lr.entitlements.
type Worker struct {
	p     Provider
	m     *mapping.Mapping
	out   Producer
	cfg   *config.Config
	opt   Options
	log   *slog.Logger
	stage string

	mu      sync.Mutex
	synced  map[string]int64 // highest version synced per customer
	blocked error            // why the worker is waiting, for readiness
	st      stats
}

// NewWorker returns a worker for provider p.
func NewWorker(cfg *config.Config, m *mapping.Mapping, p Provider, out Producer, o Options) *Worker {
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Minute
	}
	if o.Drain <= 0 {
		o.Drain = cfg.ShutdownTimeout / 2
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Worker{
		p: p, m: m, out: out, cfg: cfg, opt: o, stage: "sink." + p.Name(),
		log:    o.Log.With("component", "sink."+p.Name()),
		synced: map[string]int64{},
	}
}

// Provider returns the worker's provider.
func (w *Worker) Provider() Provider { return w.p }

// GroupID is the worker's consumer group: one per provider, so a slow
// provider never holds back another (and another one for dry runs).
func (w *Worker) GroupID() string {
	g := w.opt.Group
	if g == "" {
		g = w.cfg.TopicPrefix + "sink"
	}
	if w.opt.DryRun {
		return g + "." + w.p.Name() + ".dry_run"
	}
	return g + "." + w.p.Name()
}

// Stats returns the worker's counters.
func (w *Worker) Stats() Stats {
	return Stats{
		Customers: w.st.customers.Load(), Changed: w.st.changed.Load(), Noop: w.st.noop.Load(),
		Skipped: w.st.skipped.Load(), Superseded: w.st.superseded.Load(), Actions: w.st.actions.Load(),
		Changes: w.st.changes.Load(), DeadLetters: w.st.dead.Load(), Retries: w.st.retries.Load(),
	}
}

// Ready is the worker's readiness check: an error while it waits to retry.
func (w *Worker) Ready(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.blocked != nil {
		return fmt.Errorf("%s: retrying after: %w", w.stage, w.blocked)
	}
	return nil
}

func (w *Worker) setBlocked(err error) {
	w.mu.Lock()
	w.blocked = err
	w.mu.Unlock()
}

// entry is the newest entitlement of one customer in a batch.
type entry struct {
	e   *schemas.Entitlement
	raw []byte
}

// decode parses a batch and keeps the newest version per customer, in the
// order customers first appear. Records that cannot be handled become dead
// letters; tombstones are skipped (a deleted key has nothing to push).
func (w *Worker) decode(batch []kafka.Message) ([]*entry, []schemas.DeadLetter) {
	var order []*entry
	byCustomer := map[string]*entry{}
	var dead []schemas.DeadLetter
	for _, m := range batch {
		if m.Value == nil {
			continue
		}
		var e schemas.Entitlement
		reason := ""
		if err := json.Unmarshal(m.Value, &e); err != nil {
			reason = "not an entitlement record: " + err.Error()
		} else if e.V != schemas.EntitlementVersion {
			reason = fmt.Sprintf("entitlement envelope version %d is not %d", e.V, schemas.EntitlementVersion)
		} else if e.CustomerID == "" {
			reason = "entitlement without customer_id"
		}
		if reason != "" {
			dead = append(dead, w.deadLetter(string(m.Key), reason, m.Value))
			continue
		}
		if cur, ok := byCustomer[e.CustomerID]; ok {
			w.st.superseded.Add(1)
			superseded.WithLabelValues(w.p.Name()).Inc()
			if cur.e.Version > e.Version {
				continue
			}
			cur.e, cur.raw = &e, m.Value
			continue
		}
		en := &entry{e: &e, raw: m.Value}
		byCustomer[e.CustomerID] = en
		order = append(order, en)
	}
	return order, dead
}

// Handle syncs a batch of entitlement records and returns once every
// result is durable; a nil return lets the consumer commit the batch. It
// stops starting customers when ctx ends and lets in-flight ones finish
// within Options.Drain.
func (w *Worker) Handle(ctx context.Context, batch []kafka.Message) error {
	ents, dead := w.decode(batch)
	if len(dead) > 0 {
		if err := w.write(nil, dead); err != nil {
			return err
		}
	}
	work, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.opt.Drain, func() { cancel(ctx.Err()) })
		context.AfterFunc(work, func() { t.Stop() })
	})
	defer stop()
	sem := make(chan struct{}, w.opt.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	note := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	fail := func(err error) {
		note(err)
		cancel(err)
	}
loop:
	for _, en := range ents {
		// On shutdown start no one new; in-flight customers finish within
		// Drain, and the batch is not acknowledged.
		if ctx.Err() != nil {
			note(ctx.Err())
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			note(ctx.Err())
			break loop
		case <-work.Done():
			break loop
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := w.one(work, en); err != nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return first
}

// one syncs one customer and writes its results.
func (w *Worker) one(ctx context.Context, en *entry) error {
	e := en.e
	w.mu.Lock()
	last, seen := w.synced[e.CustomerID]
	w.mu.Unlock()
	if seen && e.Version < last {
		w.st.superseded.Add(1)
		superseded.WithLabelValues(w.p.Name()).Inc()
		return nil
	}
	start := time.Now()
	results, dead, err := w.syncRetrying(ctx, e, en.raw)
	syncSeconds.WithLabelValues(w.p.Name()).Observe(time.Since(start).Seconds())
	if werr := w.write(results, dead); werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	w.mu.Lock()
	if e.Version > w.synced[e.CustomerID] || !seen {
		w.synced[e.CustomerID] = e.Version
	}
	w.mu.Unlock()
	if w.opt.OnResult != nil {
		for _, r := range results {
			w.opt.OnResult(r)
		}
	}
	return nil
}

// syncRetrying syncs e until it succeeds, fails fatally or ctx ends. Each
// try starts from a fresh read, so a retry never repeats a write that
// took effect; the results of every try are kept.
func (w *Worker) syncRetrying(ctx context.Context, e *schemas.Entitlement, raw []byte) ([]schemas.SinkResult, []schemas.DeadLetter, error) {
	var results []schemas.SinkResult
	var dead []schemas.DeadLetter
	for attempt := 0; ; attempt++ {
		res, dl, err := w.sync(ctx, e, raw)
		results, dead = append(results, res...), append(dead, dl...)
		if err == nil {
			if attempt > 0 {
				w.setBlocked(nil)
			}
			return results, dead, nil
		}
		if ctx.Err() != nil || errors.Is(err, ErrRejected) {
			return results, dead, err
		}
		w.setBlocked(err)
		w.st.retries.Add(1)
		retries.WithLabelValues(w.p.Name()).Inc()
		wait := w.backoff(attempt)
		w.log.WarnContext(ctx, "customer sync failed; will retry", "customer_id", e.CustomerID, "err", err, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return results, dead, ctx.Err()
		case <-t.C:
		}
	}
}

func (w *Worker) backoff(attempt int) time.Duration {
	d := w.opt.RetryMin << min(attempt, 16)
	if d <= 0 || d > w.opt.RetryMax {
		d = w.opt.RetryMax
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// classify tells how a provider error is handled.
func classify(err error) (fatal, permanent bool) {
	var se *httpx.StatusError
	if errors.As(err, &se) && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden) {
		return true, false
	}
	return false, httpx.IsPermanent(err)
}

// sync reads, diffs and pushes one customer once. It returns the results
// so far and a non-nil error when the customer must be tried again (or
// the worker must stop: ErrRejected).
func (w *Worker) sync(ctx context.Context, e *schemas.Entitlement, raw []byte) ([]schemas.SinkResult, []schemas.DeadLetter, error) {
	r := &syncRun{w: w, e: e, raw: raw}
	now := time.Now()
	if e.Deleted || strings.TrimSpace(e.Email) == "" {
		why := "merged into another customer"
		if !e.Deleted {
			why = "no email to find the customer by"
		}
		r.rec(ActNone, "", schemas.SinkSkipped, Outcome{}, errors.New(why), now)
		w.done(&w.st.skipped, "skipped")
		return r.results, nil, nil
	}
	t := w.p.Target(w.m.Desired(e, w.opt.Now()), e)
	st, o, err := w.p.Read(ctx, e, t)
	if err != nil {
		if r.failed(ctx, ActRead, "", o, err, now) {
			w.done(nil, "dlq")
			return r.results, r.dead, nil
		}
		return r.results, r.dead, w.fatalOr(err)
	}
	wrote, err := r.push(ctx, &st, t)
	if err != nil {
		return r.results, r.dead, w.fatalOr(err)
	}
	switch {
	case len(r.results) == 0:
		r.rec(ActNoop, "", schemas.SinkNoop, o, nil, now)
		w.done(&w.st.noop, "noop")
	case wrote:
		w.done(&w.st.changed, "changed")
	case w.opt.DryRun:
		w.done(&w.st.changed, "dry_run")
	default:
		w.done(nil, "dlq")
	}
	return r.results, r.dead, nil
}

func (w *Worker) fatalOr(err error) error {
	if fatal, _ := classify(err); fatal {
		return fmt.Errorf("%w: %s: %w", ErrRejected, w.p.Name(), err)
	}
	return err
}

// done counts a synced customer by outcome (c: the outcome's own counter, if any).
func (w *Worker) done(c *atomic.Int64, outcome string) {
	if c != nil {
		c.Add(1)
	}
	w.st.customers.Add(1)
	customers.WithLabelValues(w.p.Name(), outcome).Inc()
}
