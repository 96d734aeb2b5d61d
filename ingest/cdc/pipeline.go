package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/internal/kafka"
)

// Writer stores records durably. Write blocks until Kafka acknowledged every
// message (acks=all) or fails; a failed Write may have stored some of them.
// *kafka.Producer is one.
type Writer interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// item is what the reader hands the pipeline, in stream order: a record, a
// confirmable position, or a function to run once everything before it is
// acknowledged.
type item struct {
	rec        record
	checkpoint LSN
	onDone     func()
}

// pipelineConfig tunes a pipeline; zero values take the defaults.
type pipelineConfig struct {
	Shards        int           // concurrent writers; records of one key always go to the same one
	RoundRecords  int           // a round is cut at this many records …
	RoundBytes    int           // … or bytes, or when the input is momentarily empty
	MergeRecords  int           // a writer merges queued batches up to this many records per Write
	BudgetBytes   int64         // record bytes between the reader and Kafka's acknowledgement
	RetryWindow   time.Duration // how long a failing Write is retried before the pipeline fails
	BlockedLogGap time.Duration // how often a blocked pipeline says so
}

func (c *pipelineConfig) defaults() {
	if c.Shards <= 0 {
		c.Shards = 4
	}
	if c.RoundRecords <= 0 {
		c.RoundRecords = 8192
	}
	if c.RoundBytes <= 0 {
		c.RoundBytes = 4 << 20
	}
	if c.MergeRecords <= 0 {
		c.MergeRecords = 16384
	}
	if c.BudgetBytes <= 0 {
		c.BudgetBytes = 64 << 20
	}
	if c.RetryWindow <= 0 {
		c.RetryWindow = time.Minute
	}
	if c.BlockedLogGap <= 0 {
		c.BlockedLogGap = 5 * time.Second
	}
}

// pipeline carries items from the reader to Kafka: a dispatcher cuts the
// stream into rounds and splits each round by key into one batch per shard;
// each shard's writer writes its batches in order; the tracker turns
// acknowledged rounds into the confirmable position. Per-key order holds
// because a key always maps to the same shard and a shard writes in order.
type pipeline struct {
	cfg     pipelineConfig
	log     *slog.Logger
	writers []Writer // shard i writes through writers[i%len(writers)]
	tracker *tracker
	budget  *budget
	metrics *slotMetrics

	in     chan []item
	shards []chan *batch

	ctx    context.Context // cancelled on failure or when the drain deadline passes
	cancel context.CancelFunc
	errMu  sync.Mutex
	err    error
	wg     sync.WaitGroup
}

type batch struct {
	round    uint64
	msgs     []kafka.Message
	counters []prometheus.Counter
	bytes    int64
}

// newPipeline starts a pipeline writing through writers: shard i uses
// writers[i%len(writers)], so one key always goes through one writer (Kafka
// keeps one request in flight per partition and writer: several writers
// carry more at once when Kafka answers slowly).
func newPipeline(ctx context.Context, log *slog.Logger, writers []Writer, tr *tracker, m *slotMetrics, cfg pipelineConfig) *pipeline {
	cfg.defaults()
	p := &pipeline{cfg: cfg, log: log, writers: writers, tracker: tr, metrics: m, budget: newBudget(cfg.BudgetBytes)}
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.in = make(chan []item, 64)
	for i := 0; i < cfg.Shards; i++ {
		// Deep enough that merged writes fill Kafka batches; the byte
		// budget, not this, bounds the memory.
		ch := make(chan *batch, 256)
		p.shards = append(p.shards, ch)
		p.wg.Add(1)
		go p.write(ch, writers[i%len(writers)])
	}
	p.wg.Add(1)
	go p.dispatch()
	return p
}

// errStopped is returned by send when the caller's stop channel closed.
var errStopped = errors.New("stopped")

// send hands a chunk of items to the pipeline, in stream order; the pipeline
// owns the chunk afterwards. It blocks while the pipeline is full
// (backpressure), and fails once the pipeline has failed or stop is closed.
func (p *pipeline) send(chunk []item, stop <-chan struct{}) error {
	if len(chunk) == 0 {
		return nil
	}
	select {
	case p.in <- chunk:
		return nil
	case <-p.ctx.Done():
		return p.failure()
	case <-stop:
		return errStopped
	}
}

// close ends the input: what was sent is still written. Call once.
func (p *pipeline) close() { close(p.in) }

// wait blocks until everything sent is acknowledged or the pipeline failed,
// or until deadline passes, when it abandons the unwritten rest.
func (p *pipeline) wait(deadline time.Duration) error {
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(deadline):
		p.fail(errors.New("drain deadline passed with records unacknowledged"))
		<-done
	}
	p.cancel()
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

// failed is closed once the pipeline failed (or was stopped).
func (p *pipeline) failed() <-chan struct{} { return p.ctx.Done() }

func (p *pipeline) failure() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	if p.err == nil {
		return context.Cause(p.ctx)
	}
	return p.err
}

func (p *pipeline) fail(err error) {
	p.errMu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.errMu.Unlock()
	p.cancel()
}

// round accumulates one round in the dispatcher.
type round struct {
	batches    []*batch
	records    int
	bytes      int64
	checkpoint LSN
	onDone     []func()
}

func (r *round) empty() bool {
	return r.records == 0 && r.checkpoint == 0 && len(r.onDone) == 0
}

func (p *pipeline) dispatch() {
	defer p.wg.Done()
	defer func() {
		for _, ch := range p.shards {
			close(ch)
		}
	}()
	r := &round{batches: make([]*batch, len(p.shards))}
	for {
		var chunk []item
		var ok bool
		if r.empty() {
			select {
			case chunk, ok = <-p.in:
			case <-p.ctx.Done():
				return
			}
		} else {
			select {
			case chunk, ok = <-p.in:
			default:
				// The reader has nothing more right now: ship what we have.
				if !p.cut(r) {
					return
				}
				r = &round{batches: make([]*batch, len(p.shards))}
				continue
			}
		}
		if !ok {
			p.cut(r)
			return
		}
		for _, it := range chunk {
			if it.rec.rel != nil {
				p.add(r, it.rec)
			}
			if it.checkpoint > r.checkpoint {
				r.checkpoint = it.checkpoint
			}
			if it.onDone != nil {
				r.onDone = append(r.onDone, it.onDone)
			}
		}
		recycleChunk(chunk)
		if r.records >= p.cfg.RoundRecords || r.bytes >= int64(p.cfg.RoundBytes) {
			if !p.cut(r) {
				return
			}
			r = &round{batches: make([]*batch, len(p.shards))}
		}
	}
}

func (p *pipeline) add(r *round, rec record) {
	h := rec.rel.topicHash
	for _, c := range rec.key {
		h ^= uint32(c)
		h *= 16777619
	}
	s := int(h % uint32(len(p.shards)))
	b := r.batches[s]
	if b == nil {
		b = &batch{}
		r.batches[s] = b
	}
	b.msgs = append(b.msgs, kafka.Message{Topic: rec.rel.topic, Key: rec.key, Value: rec.value, Headers: rec.rel.headers})
	b.counters = append(b.counters, rec.rel.rows[rec.op])
	n := int64(len(rec.value))
	b.bytes += n
	r.bytes += n
	r.records++
}

// cut registers the round with the tracker and hands its batches to the
// shard writers. It reports false when the pipeline failed meanwhile.
func (p *pipeline) cut(r *round) bool {
	if r.empty() {
		return true
	}
	if r.bytes > 0 {
		if err := p.budget.acquire(p.ctx, r.bytes, p.cfg.BlockedLogGap, func(waited time.Duration) {
			p.log.Warn("waiting for Kafka to acknowledge before reading more", "waited", waited.Round(time.Second).String(), "in_flight_bytes", p.budget.inUse())
		}); err != nil {
			return false
		}
		p.metrics.inflight.Set(float64(p.budget.inUse()))
	}
	pending := 0
	for _, b := range r.batches {
		if b != nil {
			pending++
		}
	}
	id, err := p.tracker.open(pending, r.checkpoint, r.onDone)
	if err != nil {
		p.fail(err)
		return false
	}
	for s, b := range r.batches {
		if b == nil {
			continue
		}
		b.round = id
		select {
		case p.shards[s] <- b:
		case <-p.ctx.Done():
			return false
		}
	}
	return true
}

// write is one shard's writer: batches in order, merged while they queue.
func (p *pipeline) write(ch chan *batch, w Writer) {
	defer p.wg.Done()
	var msgs []kafka.Message
	for first := range ch {
		if p.ctx.Err() != nil {
			continue // failed: drain without writing so the dispatcher is not blocked
		}
		batches := []*batch{first}
		n := len(first.msgs)
	merge:
		for n < p.cfg.MergeRecords {
			select {
			case b, ok := <-ch:
				if !ok {
					break merge
				}
				batches = append(batches, b)
				n += len(b.msgs)
			default:
				break merge
			}
		}
		out := first.msgs
		if len(batches) > 1 {
			msgs = msgs[:0]
			for _, b := range batches {
				msgs = append(msgs, b.msgs...)
			}
			out = msgs
		}
		if err := p.writeRetrying(w, out); err != nil {
			p.fail(err)
			continue
		}
		for _, b := range batches {
			for _, c := range b.counters {
				if c != nil {
					c.Inc()
				}
			}
			p.budget.release(b.bytes)
			if err := p.tracker.done(b.round); err != nil {
				p.fail(err)
			}
		}
		p.metrics.inflight.Set(float64(p.budget.inUse()))
	}
}

// writeRetrying writes msgs, retrying with backoff for the retry window.
// Nothing is acknowledged to Postgres until a Write succeeded, so retrying
// only risks duplicates, which carry the same LSN.
func (p *pipeline) writeRetrying(w Writer, msgs []kafka.Message) error {
	start := time.Now()
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := w.Write(p.ctx, msgs...)
		if err == nil {
			return nil
		}
		if p.ctx.Err() != nil {
			return p.failure()
		}
		p.metrics.writeErrors.Inc()
		if time.Since(start) > p.cfg.RetryWindow {
			return fmt.Errorf("kafka write failed for %s (%d attempts): %w", p.cfg.RetryWindow, attempt, err)
		}
		p.log.Warn("kafka write failed; retrying", "records", len(msgs), "attempt", attempt, "err", err)
		select {
		case <-time.After(backoff):
		case <-p.ctx.Done():
			return p.failure()
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// budget bounds the bytes in flight between the dispatcher and Kafka.
type budget struct {
	mu   sync.Mutex
	used int64
	max  int64
	wake chan struct{}
}

func newBudget(max int64) *budget { return &budget{max: max, wake: make(chan struct{})} }

// acquire blocks until n bytes fit (a request larger than the whole budget
// fits once nothing else is in flight). It calls blocked every gap while it waits.
func (b *budget) acquire(ctx context.Context, n int64, gap time.Duration, blocked func(time.Duration)) error {
	start := time.Now()
	var tick <-chan time.Time
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		wake := b.wake
		b.mu.Unlock()
		if tick == nil {
			t := time.NewTicker(gap)
			defer t.Stop()
			tick = t.C
		}
		select {
		case <-wake:
		case <-tick:
			blocked(time.Since(start))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}

func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
