// Package audit is the audit trail: a writer that consumes every lr.* topic
// into ClickHouse (raw provider events with duplicates flagged, CDC changes,
// identity links, entitlement states, decisions, mismatches, sink actions and
// dead letters, all redacted before storage), and the queries people and
// alerts ask of it: a customer's timeline, the pipeline's rates, and why a
// customer has or lacks access.
//
// Delivery: Kafka offsets are committed only after ClickHouse acknowledged
// the insert of the whole batch. A crash in between re-delivers the batch;
// every table collapses re-inserted rows on their record identity and every
// query dedupes on it, so counts do not move (schemas/clickhouse/001_raw_events.sql).
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/obs"
)

// Options tunes a Writer; the zero value is the default.
type Options struct {
	// Redact lists the payload fields dropped before storage (see
	// DefaultDrop for the syntax); nil means DefaultDrop.
	Redact []string
	// GroupID is the Kafka consumer group; default <topic prefix>audit.
	GroupID string
	// MaxBatch and MaxWait bound a batch: it is inserted when it holds
	// MaxBatch records or MaxWait after its first record arrived.
	MaxBatch int
	MaxWait  time.Duration
	// TopicRefresh is how often the broker's topic list is checked for new
	// CDC topics (lr.cdc.<schema>.<table> appear when tables are published).
	TopicRefresh time.Duration
	// RetryMin and RetryMax bound the backoff between insert attempts while
	// ClickHouse is unavailable.
	RetryMin, RetryMax time.Duration
	// InsertTimeout bounds one insert attempt. An attempt in flight at
	// shutdown is allowed to finish within it, so its batch is acknowledged.
	InsertTimeout time.Duration
	// Conn, when set, is the ClickHouse connection (on the audit database)
	// to use; `launchready run` shares one between stages. The writer does
	// not close it. Nil: Run opens its own and retries until it answers.
	Conn Conn
}

func (o *Options) defaults(env *app.Env) {
	if o.Redact == nil {
		o.Redact = DefaultDrop
	}
	if o.GroupID == "" {
		o.GroupID = env.Cfg.TopicPrefix + "audit"
	}
	if o.MaxBatch <= 0 {
		// Large batches make few large ClickHouse parts (each insert makes
		// one per table), which is most of the insert rate when catching
		// up; MaxWait keeps them from delaying records when traffic is low.
		// Memory: about twice the records' size at the peak of a batch.
		o.MaxBatch = 50000
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 500 * time.Millisecond
	}
	if o.TopicRefresh <= 0 {
		o.TopicRefresh = 30 * time.Second
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 200 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 10 * time.Second
	}
	if o.InsertTimeout <= 0 {
		o.InsertTimeout = 15 * time.Second
	}
}

// Conn is the part of a ClickHouse connection the writer uses; the
// driver.Conn that internal/chdb opens has it.
type Conn interface {
	Inserter
	Querier
	Ping(ctx context.Context) error
}

// Writer is the audit stage: Kafka → ClickHouse.
type Writer struct {
	env *app.Env
	log *slog.Logger
	opt Options
	dec *decoder

	mu     sync.Mutex
	conn   Conn
	status Status

	// afterInsert, when set (tests), runs after a batch was stored and
	// before it is acknowledged; an error leaves the batch unacknowledged,
	// as a crash at that instant would.
	afterInsert func(records int, rows map[string]int) error
}

// Status is the writer's health, for /readyz and the ops page.
type Status struct {
	Connected bool      `json:"connected"`
	Topics    []string  `json:"topics"`
	LastError string    `json:"last_error,omitempty"`
	FailingAt time.Time `json:"failing_since,omitzero"`
	Attempts  int       `json:"attempts,omitempty"` // failed attempts of the waiting batch
	Waiting   int       `json:"waiting,omitempty"`  // records of the batch that waits for ClickHouse
	LastOK    time.Time `json:"last_insert,omitzero"`
}

// New returns the audit writer and registers its readiness check "audit".
// It does not connect: Run does, retrying until ClickHouse answers.
func New(env *app.Env, opt Options) (*Writer, error) {
	opt.defaults(env)
	red, err := NewRedactor(opt.Redact)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	w := &Writer{
		env: env,
		log: obs.Component(env.Log, "audit"),
		opt: opt,
		dec: newDecoder(red, env.Cfg.TopicPrefix),
	}
	if env.Health != nil {
		env.Health.Add("audit", w.ready)
	}
	return w, nil
}

// Name is the stage's component name.
func (w *Writer) Name() string { return "audit" }

// Status returns a copy of the writer's health.
func (w *Writer) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.status
	s.Topics = append([]string(nil), s.Topics...)
	return s
}

// ready is the readiness check: not ready while ClickHouse is unreachable or
// a batch waits for it, with the reason.
func (w *Writer) ready(ctx context.Context) error {
	s := w.Status()
	w.mu.Lock()
	conn := w.conn
	w.mu.Unlock()
	switch {
	case !s.Connected:
		msg := "not connected to ClickHouse yet"
		if s.LastError != "" {
			msg += ": " + s.LastError
		}
		return errors.New(msg)
	case !s.FailingAt.IsZero():
		return fmt.Errorf("ClickHouse inserts failing since %s (%d attempts; consumption paused, %d records waiting, nothing acknowledged): %s",
			s.FailingAt.UTC().Format(time.RFC3339), s.Attempts, s.Waiting, s.LastError)
	}
	if err := conn.Ping(ctx); err != nil {
		return fmt.Errorf("ClickHouse does not answer: %w", err)
	}
	return nil
}

// Run connects to ClickHouse, then consumes every audit topic until ctx
// ends. It blocks. On ctx end the batch in flight is inserted (within
// InsertTimeout) and acknowledged, then it returns nil.
func (w *Writer) Run(ctx context.Context) error {
	var conn Conn = w.opt.Conn
	if conn == nil {
		own, err := w.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		defer own.Close()
		conn = own
	} else {
		w.mu.Lock()
		w.conn, w.status.Connected = conn, true
		w.mu.Unlock()
		clickhouseUp.Set(1)
	}
	// A schema that does not match is fatal; ClickHouse not answering the
	// check is not.
	for attempt := 1; ; attempt++ {
		err := checkSchema(ctx, conn, w.env.Cfg.ClickHouseDatabase)
		if err == nil {
			break
		}
		if errors.Is(err, ErrSchema) {
			return fmt.Errorf("audit: %w", err)
		}
		w.log.WarnContext(ctx, "cannot read the ClickHouse schema, retrying", "attempt", attempt, "err", err)
		if !sleep(ctx, backoff(attempt, w.opt.RetryMin, w.opt.RetryMax)) {
			return nil
		}
	}
	return w.consume(ctx)
}

// connect opens ClickHouse, retrying with backoff until it answers.
func (w *Writer) connect(ctx context.Context) (driver.Conn, error) {
	for attempt := 1; ; attempt++ {
		conn, err := chdb.Open(ctx, w.env.Cfg, w.env.Cfg.ClickHouseDatabase)
		if err == nil {
			w.mu.Lock()
			w.conn = conn
			w.status.Connected = true
			w.status.LastError = ""
			w.mu.Unlock()
			clickhouseUp.Set(1)
			w.log.InfoContext(ctx, "connected to ClickHouse", "addr", w.env.Cfg.ClickHouseAddr, "database", w.env.Cfg.ClickHouseDatabase)
			return conn, nil
		}
		w.mu.Lock()
		w.status.LastError = err.Error()
		w.mu.Unlock()
		clickhouseUp.Set(0)
		w.log.WarnContext(ctx, "ClickHouse unavailable, retrying", "attempt", attempt, "err", err)
		if !sleep(ctx, backoff(attempt, w.opt.RetryMin, w.opt.RetryMax)) {
			return nil, ctx.Err()
		}
	}
}

// consume runs a consumer group over the audit topics, restarting it when
// the topic list changes (kafka-go's GroupTopics is fixed per reader) or when
// it fails. A restart rejoins the group; uncommitted records are re-read.
func (w *Writer) consume(ctx context.Context) error {
	for attempt := 1; ctx.Err() == nil; {
		topics, err := w.listTopics(ctx)
		if err != nil || len(topics) == 0 {
			if err == nil {
				err = errors.New("no audit topic exists yet (run launchready migrate)")
			}
			w.log.WarnContext(ctx, "cannot list audit topics, retrying", "err", err)
			if !sleep(ctx, backoff(attempt, w.opt.RetryMin, w.opt.RetryMax)) {
				return nil
			}
			attempt++
			continue
		}
		w.mu.Lock()
		w.status.Topics = topics
		w.mu.Unlock()
		topicsGauge.Set(float64(len(topics)))
		w.log.InfoContext(ctx, "consuming", "group", w.opt.GroupID, "topics", topics)

		cctx, cancel := context.WithCancel(ctx)
		go w.watchTopics(cctx, topics, cancel)
		c := kafka.NewConsumer(kafka.ConsumerOptions{
			Brokers:  w.env.Cfg.KafkaBrokers,
			GroupID:  w.opt.GroupID,
			Topics:   topics,
			MaxBatch: w.opt.MaxBatch,
			MaxWait:  w.opt.MaxWait,
			Log:      w.log,
		})
		// The next batch is decoded while the previous one is inserted.
		err = c.RunAsync(cctx, 1, w.handle)
		changed := cctx.Err() != nil && ctx.Err() == nil
		cancel()
		if cerr := c.Close(); cerr != nil && err == nil && !changed {
			err = cerr
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case changed:
			attempt = 1 // the topic list changed: resubscribe at once
		case err != nil:
			w.log.WarnContext(ctx, "consumer stopped, restarting", "err", err)
			if !sleep(ctx, backoff(attempt, w.opt.RetryMin, w.opt.RetryMax)) {
				return nil
			}
			attempt++
		}
	}
	return nil
}

// handle decodes one batch and returns the wait that stores it; the consumer
// calls the waits one at a time, in order, and commits a batch's offsets once
// its wait returned.
func (w *Writer) handle(ctx context.Context, msgs []kafka.Message) (func() error, error) {
	b := w.build(msgs)
	return func() error { return w.store(ctx, msgs, b) }, nil
}

// store inserts a decoded batch and returns once ClickHouse acknowledged all
// of it. While ClickHouse fails it retries with backoff and does not return,
// so nothing more is consumed (at most one more batch is decoded) and nothing
// is acknowledged; it gives up only when ctx ends (the batch is then read
// again after restart).
func (w *Writer) store(ctx context.Context, msgs []kafka.Message, b *batch) error {
	w.mu.Lock()
	conn := w.conn
	w.mu.Unlock()
	db := w.env.Cfg.ClickHouseDatabase
	for attempt := 1; ; attempt++ {
		start := time.Now()
		// The attempt is not cut short by ctx: an insert in flight at
		// shutdown finishes so its batch can be acknowledged.
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opt.InsertTimeout)
		err := insert(ictx, conn, db, b)
		cancel()
		if err == nil {
			insertSeconds.Observe(time.Since(start).Seconds())
			for t, n := range b.rows() {
				rowsTotal.WithLabelValues(t).Add(float64(n))
			}
			recordsTotal.Add(float64(len(msgs)))
			w.mu.Lock()
			if !w.status.FailingAt.IsZero() {
				w.log.InfoContext(ctx, "ClickHouse inserts recovered", "after", time.Since(w.status.FailingAt).Round(time.Millisecond), "attempts", w.status.Attempts)
			}
			w.status.FailingAt, w.status.Attempts, w.status.Waiting, w.status.LastError = time.Time{}, 0, 0, ""
			w.status.LastOK = time.Now()
			w.mu.Unlock()
			clickhouseUp.Set(1)
			if w.afterInsert != nil {
				return w.afterInsert(len(msgs), b.rows())
			}
			return nil
		}
		insertFailures.Inc()
		clickhouseUp.Set(0)
		w.mu.Lock()
		if w.status.FailingAt.IsZero() {
			w.status.FailingAt = start
		}
		w.status.Attempts = attempt
		w.status.Waiting = len(msgs)
		w.status.LastError = err.Error()
		w.mu.Unlock()
		wait := backoff(attempt, w.opt.RetryMin, w.opt.RetryMax)
		w.log.WarnContext(ctx, "ClickHouse insert failed; consumption paused, retrying", "attempt", attempt, "records", len(msgs), "retry_in", wait, "err", err)
		if !sleep(ctx, wait) {
			return fmt.Errorf("audit: batch of %d records not stored: %w", len(msgs), ctx.Err())
		}
	}
}

// build decodes a batch into table rows, in parallel for large batches.
func (w *Writer) build(msgs []kafka.Message) *batch {
	workers := runtime.GOMAXPROCS(0)
	if len(msgs) < 2000 || workers < 2 {
		b := &batch{}
		w.dec.reserve(b, msgs)
		for i := range msgs {
			w.dec.add(b, &msgs[i])
		}
		return b
	}
	parts := make([]*batch, workers)
	var wg sync.WaitGroup
	chunk := (len(msgs) + workers - 1) / workers
	for p := range parts {
		lo, hi := p*chunk, min((p+1)*chunk, len(msgs))
		parts[p] = &batch{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.dec.reserve(parts[p], msgs[lo:hi])
			for i := lo; i < hi; i++ {
				w.dec.add(parts[p], &msgs[i])
			}
		}()
	}
	wg.Wait()
	parts[0].merge(parts[1:]...)
	return parts[0]
}

// backoff is the wait before retry attempt n: doubling from lo, capped at hi.
func backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
