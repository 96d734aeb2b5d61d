package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	kgo "github.com/segmentio/kafka-go"
)

// ConsumerOptions configures a consumer-group reader.
type ConsumerOptions struct {
	Brokers []string
	GroupID string
	Topics  []string
	// MaxBatch and MaxWait bound a batch: the handler is called with up to
	// MaxBatch records, or with what arrived within MaxWait of the first.
	MaxBatch int
	MaxWait  time.Duration
	// StartFirst starts a group with no committed offset at the earliest
	// record (the default); false starts at the end.
	StartLast bool
	Log       *slog.Logger
}

// Handler processes a batch and returns only once its outputs are durable.
// A nil return acknowledges the whole batch; an error stops the consumer
// without committing, so the batch is read again after restart.
type Handler func(ctx context.Context, batch []Message) error

// Consumer reads a consumer group's partitions and commits offsets only after
// the handler made the batch's outputs durable: at least once, never less.
type Consumer struct {
	r   *kgo.Reader
	opt ConsumerOptions
}

// NewConsumer returns a Consumer; it joins the group on first read.
func NewConsumer(o ConsumerOptions) *Consumer {
	if o.MaxBatch == 0 {
		o.MaxBatch = 500
	}
	if o.MaxWait == 0 {
		o.MaxWait = 20 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	start := kgo.FirstOffset
	if o.StartLast {
		start = kgo.LastOffset
	}
	cfg := kgo.ReaderConfig{
		Brokers:                o.Brokers,
		GroupID:                o.GroupID,
		GroupTopics:            o.Topics,
		MinBytes:               1,
		MaxBytes:               16 << 20,
		MaxWait:                100 * time.Millisecond,
		ReadBatchTimeout:       2 * time.Second,
		CommitInterval:         0, // synchronous commits: CommitMessages returns once stored
		StartOffset:            start,
		HeartbeatInterval:      1 * time.Second,
		SessionTimeout:         10 * time.Second,
		RebalanceTimeout:       10 * time.Second,
		JoinGroupBackoff:       500 * time.Millisecond,
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 2 * time.Second,
		ReadBackoffMin:         50 * time.Millisecond,
		ReadBackoffMax:         500 * time.Millisecond,
	}
	return &Consumer{r: kgo.NewReader(cfg), opt: o}
}

// Run reads batches and hands them to h until ctx ends or h fails. It commits
// each batch's offsets after h returned nil. It blocks.
func (c *Consumer) Run(ctx context.Context, h Handler) error {
	for {
		batch, err := c.fetchBatch(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("consumer %s: fetch: %w", c.opt.GroupID, err)
		}
		if len(batch) == 0 {
			continue
		}
		if err := h(ctx, batch); err != nil {
			return fmt.Errorf("consumer %s: %w", c.opt.GroupID, err)
		}
		if err := c.commit(batch); err != nil {
			return fmt.Errorf("consumer %s: %w", c.opt.GroupID, err)
		}
	}
}

// AsyncHandler starts a batch's work and returns a wait function that blocks
// until the batch's outputs are durable. A non-nil error from either stops
// the consumer without committing that batch.
type AsyncHandler func(ctx context.Context, batch []Message) (wait func() error, err error)

// RunAsync is Run with the next batch fetched and handed to h while earlier
// batches are still completing (see Pipeline): each batch's offsets are
// committed once its wait returned nil. A handler that starts outputs in call
// order (for example, by queueing them to one writer) keeps them in input
// order while its CPU work overlaps the previous batch's round trips. It
// blocks until ctx ends or a handler or wait fails; batches in flight when it
// fails are not committed and are read again.
func (c *Consumer) RunAsync(ctx context.Context, depth int, h AsyncHandler) error {
	if err := Pipeline(ctx, depth, c.fetchBatch, h, c.commit); err != nil {
		return fmt.Errorf("consumer %s: %w", c.opt.GroupID, err)
	}
	return nil
}

// commit stores a handled batch's offsets, under its own deadline: a
// shutdown that arrives after the outputs were written still records the
// progress.
func (c *Consumer) commit(batch []Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.r.CommitMessages(ctx, batch...); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Pipeline takes batches from next and hands each to h while up to depth
// earlier batches are still completing. Their waits are called one at a time
// in the order h was called, each followed by done (when not nil). It stops
// when next fails (io.EOF or ctx's end: a clean stop), or when h, a wait or
// done fails (returning that error); batches already started are waited for
// in order before it returns, and none after a failed one reaches done.
func Pipeline(ctx context.Context, depth int, next func(context.Context) ([]Message, error), h AsyncHandler, done func([]Message) error) error {
	if depth < 1 {
		depth = 1
	}
	type inflight struct {
		batch []Message
		wait  func() error
	}
	fetchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	queue := make(chan inflight, depth-1)
	failed := make(chan struct{}) // closed when a wait or done fails
	finished := make(chan error, 1)
	go func() {
		var err error
		for f := range queue {
			if err != nil {
				continue // drain: nothing after a failure is done
			}
			if err = f.wait(); err == nil && done != nil {
				err = done(f.batch)
			}
			if err != nil {
				close(failed)
				cancel()
			}
		}
		finished <- err
	}()
	var runErr error
	for {
		batch, err := next(fetchCtx)
		if err != nil {
			if fetchCtx.Err() == nil && !errors.Is(err, io.EOF) {
				runErr = fmt.Errorf("fetch: %w", err)
			}
			break
		}
		if len(batch) == 0 {
			continue
		}
		wait, err := h(ctx, batch)
		if err != nil {
			runErr = err
			break
		}
		select {
		case queue <- inflight{batch: batch, wait: wait}:
		case <-failed:
			// An earlier batch failed: this one is not done either.
			go func() { _ = wait() }()
		}
		if fetchCtx.Err() != nil {
			break
		}
	}
	close(queue)
	if werr := <-finished; werr != nil && runErr == nil {
		runErr = werr
	}
	return runErr
}

func (c *Consumer) fetchBatch(ctx context.Context) ([]Message, error) {
	first, err := c.r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	batch := []Message{first}
	wctx, cancel := context.WithTimeout(ctx, c.opt.MaxWait)
	defer cancel()
	for len(batch) < c.opt.MaxBatch {
		m, err := c.r.FetchMessage(wctx)
		if err != nil {
			break // the wait ran out (or ctx ended): hand over what we have
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// Lag returns the reader's current lag (records behind the end), as kafka-go
// last observed it.
func (c *Consumer) Lag() int64 { return c.r.Stats().Lag }

// Close leaves the group.
func (c *Consumer) Close() error { return c.r.Close() }

// ReadToEnd calls fn for every record of every partition of topic from the
// earliest offset to the end offset observed at the start, then returns. Used
// to rebuild in-memory state from compacted topics at start-up.
func ReadToEnd(ctx context.Context, brokers []string, topic string, fn func(Message) error) error {
	cl := NewClient(brokers)
	ends, err := cl.EndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	for p, end := range ends {
		if end == 0 {
			continue
		}
		r := kgo.NewReader(kgo.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(kgo.FirstOffset); err != nil {
			r.Close()
			return err
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return fmt.Errorf("read %s[%d]: %w", topic, p, err)
			}
			if err := fn(m); err != nil {
				r.Close()
				return err
			}
			if m.Offset+1 >= end {
				break
			}
		}
		r.Close()
	}
	return nil
}
