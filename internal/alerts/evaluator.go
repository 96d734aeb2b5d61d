package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/launchready/launchready/internal/obs"
)

// Sources are what the rules read. CH and DB are required; a nil Backlog or
// SlotLag leaves its rule out, a nil Rejected counts only dead letters as
// failed webhook deliveries.
type Sources struct {
	CH          Querier
	DB          string // ClickHouse database of the audit trail
	TopicPrefix string // to tell a provider's raw topic in dead letters
	Backlog     BacklogSource
	SlotLag     SlotLagSource
	Rejected    RejectedSource
}

// Evaluator evaluates every rule, keeps each alert's state and posts its
// transitions. Tick and Run must not be called concurrently.
type Evaluator struct {
	th       Thresholds
	src      Sources
	log      *slog.Logger
	notifier *Notifier
	m        *machine
	rs       []*rule
	backlog  map[string][]point
}

// New returns an Evaluator. Its state lives in memory: a restart forgets
// which alerts fired, so an alert still firing then is posted again.
func New(th Thresholds, src Sources, n *Notifier, log *slog.Logger) (*Evaluator, error) {
	if err := th.Validate(); err != nil {
		return nil, err
	}
	if src.CH == nil || src.DB == "" {
		return nil, errors.New("alerts: a ClickHouse connection and database are required")
	}
	if n == nil {
		n = NewNotifier("", 0)
	}
	if log == nil {
		log = slog.Default()
	}
	e := &Evaluator{th: th, src: src, log: obs.Component(log, "alerts"), notifier: n, m: newMachine(), backlog: map[string][]point{}}
	e.rs = e.rules()
	return e, nil
}

// Tick evaluates every rule as of now, advances the alerts' states, queues
// their transitions and posts the queue. It returns the transitions of this
// evaluation. A rule that cannot be measured keeps its alerts' states; its
// error is returned, joined with any post failure, after the other rules ran.
func (e *Evaluator) Tick(ctx context.Context, now time.Time) ([]Transition, error) {
	var (
		out  []Transition
		errs []error
	)
	for _, r := range e.rs {
		samples, err := r.check(ctx, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.name, err))
			continue
		}
		out = append(out, e.m.apply(r, samples, e.th.KeepFiring, now)...)
	}
	for _, t := range out {
		e.log.InfoContext(ctx, "alert "+t.State, "alert", t.Alert, "labels", t.Labels, "text", t.Text)
	}
	e.notifier.Enqueue(out...)
	if err := e.notifier.Flush(ctx); err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// Statuses lists the alerts that are pending, firing or resolving.
func (e *Evaluator) Statuses() []Status { return e.m.statuses() }

// Run evaluates at every interval until ctx ends. Failures are logged and
// retried at the next tick; it returns nil when ctx ends.
func (e *Evaluator) Run(ctx context.Context) error {
	t := time.NewTicker(e.th.Interval)
	defer t.Stop()
	for {
		tctx, cancel := context.WithTimeout(ctx, max(e.th.Interval, 30*time.Second))
		if _, err := e.Tick(tctx, time.Now()); err != nil && ctx.Err() == nil {
			e.log.WarnContext(ctx, "alert evaluation incomplete", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
