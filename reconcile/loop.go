package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/schemas"
)

// Options are what New needs besides the environment.
type Options struct {
	Settings Settings
	// Mapping overrides LR_MAPPING_FILE (tests).
	Mapping *mapping.Mapping
	// Now is the clock (tests); time.Now by default.
	Now func() time.Time
	// MaxBatch bounds an input batch (2000 by default).
	MaxBatch int
}

// Reconciler is the reconcile stage: it reads the raw, CDC and sink-result
// topics, folds them into State, and writes identities, entitlements,
// decisions and mismatches. State is global (every instance holds every
// customer, see factlog.go), so partitions can move between instances freely.
type Reconciler struct {
	cfg      *config.Config
	log      *slog.Logger
	set      Settings
	m        *mapping.Mapping
	now      func() time.Time
	maxBatch int
	prod     *kafka.Producer
	met      *metrics
	instance string
	t        topicNames

	mu      sync.Mutex
	state   *State
	emitted map[string]*emitted
	grace   map[string]time.Time // customers whose access ends with a grace period
	// openCount is the number of open findings across emitted customers.
	openCount int
	// handled counts input records whose batch was acknowledged.
	handled atomic.Int64
	// partitions of each output topic, for sizing produce calls.
	partitions map[string][]int
	ready      atomic.Bool
	// jobs feeds the one writer (see enqueue), during Run.
	jobs chan *writeJob
}

type topicNames struct {
	stripe, kit, circle, sinks                               string
	identity, entitlements, decisions, mismatches, seen, dlq string
	cdc                                                      map[string]bool
}

// New builds the stage; it registers its readiness check on env.Health. Run
// starts it.
func New(env *app.Env, o Options) (*Reconciler, error) {
	if err := o.Settings.Validate(); err != nil {
		return nil, err
	}
	m := o.Mapping
	if m == nil {
		var err error
		if m, err = mapping.Resolve(env.Cfg.MappingFile); err != nil {
			return nil, err
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 2000
	}
	if o.Settings.Sweep <= 0 {
		o.Settings.Sweep = time.Minute
	}
	cfg := env.Cfg
	r := &Reconciler{
		cfg: cfg, log: obs.Component(env.Log, "reconcile"), set: o.Settings, m: m, now: o.Now, maxBatch: o.MaxBatch,
		prod: kafka.NewProducer(cfg.KafkaBrokers, kafka.WriterOptions{}), met: theMetrics(), instance: instanceID(),
		state: NewState(m, o.Now), emitted: map[string]*emitted{}, grace: map[string]time.Time{},
		t: topicNames{
			stripe: cfg.Topic("raw.stripe"), kit: cfg.Topic("raw.kit"), circle: cfg.Topic("raw.circle"), sinks: cfg.Topic("sink.results"),
			identity: cfg.Topic("identity"), entitlements: cfg.Topic("entitlements"), decisions: cfg.Topic("decisions"),
			mismatches: cfg.Topic("mismatches"), seen: cfg.Topic("reconcile.seen"), dlq: cfg.Topic("dlq"), cdc: map[string]bool{},
		},
	}
	for _, t := range o.Settings.CDCTopics() {
		r.t.cdc[cfg.Topic(t)] = true
	}
	env.Health.Add("reconcile", func(context.Context) error {
		if !r.ready.Load() {
			return errors.New("rebuilding state from the fact log")
		}
		return nil
	})
	return r, nil
}

// Name implements app.Stage.
func (r *Reconciler) Name() string { return "reconcile" }

// Run rebuilds state, re-emits whatever the last run computed but did not
// write, then consumes until ctx ends. A batch's offsets are committed only
// after its facts and outputs are acknowledged. After an error Run must not be
// called again on the same Reconciler (its memory may hold unwritten facts):
// build a new one, which rebuilds from the fact log.
func (r *Reconciler) Run(ctx context.Context) error {
	defer r.prod.Close()
	if err := r.ensureCDCTopics(ctx); err != nil {
		return err
	}
	if err := r.loadPartitions(ctx); err != nil {
		return err
	}
	ends, err := r.rebuild(ctx)
	if err != nil {
		return err
	}
	// One writer writes every batch, in the order batches were queued: a
	// failed write stops the stage (wctx) and fails every later batch.
	wctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	r.jobs = make(chan *writeJob, 2)
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); r.writer(r.jobs, fail) }()
	defer func() { close(r.jobs); <-writerDone }()

	if err := r.recover(wctx); err != nil {
		return err
	}
	r.ready.Store(true)
	r.log.InfoContext(ctx, "reconciler ready", "customers", r.state.Len(), "instance", r.instance)

	bg, stop := context.WithCancel(wctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.tail(bg, ends) }()
	go func() { defer wg.Done(); r.sweep(bg) }()
	inputs := []string{r.t.stripe, r.t.kit, r.t.circle, r.t.sinks}
	for t := range r.t.cdc {
		inputs = append(inputs, t)
	}
	c := kafka.NewConsumer(kafka.ConsumerOptions{
		Brokers: r.cfg.KafkaBrokers, GroupID: r.cfg.TopicPrefix + "reconcile", Topics: inputs,
		MaxBatch: r.maxBatch, MaxWait: 20 * time.Millisecond, Log: r.log,
	})
	// Two batches in flight: the next batch is decoded and applied while the
	// previous one's records are on their way to the brokers.
	err = c.RunAsync(wctx, 2, r.handle)
	stop()
	wg.Wait()
	if cerr := c.Close(); err == nil && cerr != nil && ctx.Err() == nil {
		err = cerr
	}
	if cause := context.Cause(wctx); err == nil && ctx.Err() == nil && cause != nil {
		err = cause // the writer failed
	}
	return err
}

// handle applies one batch and queues its records; the returned wait blocks
// until its facts and outputs are acknowledged (the consumer then commits
// the batch's offsets).
func (r *Reconciler) handle(ctx context.Context, msgs []kafka.Message) (func() error, error) {
	start := time.Now()
	items := r.decodeAll(msgs)
	r.mu.Lock()
	b := r.newBatch()
	for i := range items {
		b.input(&msgs[i], &items[i])
	}
	wait := b.start(ctx)
	r.mu.Unlock()
	return func() error {
		if err := wait(); err != nil {
			return err
		}
		r.handled.Add(int64(len(msgs)))
		r.met.batch.Observe(time.Since(start).Seconds())
		return nil
	}, nil
}

// writeJob is one batch queued for the writer.
type writeJob struct {
	ctx  context.Context
	b    *batch
	done chan error
}

// enqueue queues b for the writer (Run starts it before anything is
// applied) and returns a wait for its result; callers hold r.mu, so the
// queue's order is the order state changed in.
func (r *Reconciler) enqueue(ctx context.Context, b *batch) func() error {
	j := &writeJob{ctx: ctx, b: b, done: make(chan error, 1)}
	r.jobs <- j
	return sync.OnceValue(func() error { return <-j.done })
}

// writer writes queued batches one after another. After a failure it writes
// nothing more: later batches were computed on top of the failed one.
func (r *Reconciler) writer(jobs <-chan *writeJob, fail context.CancelCauseFunc) {
	var err error
	for j := range jobs {
		if err == nil {
			if err = j.b.write(j.ctx); err != nil {
				fail(err)
			}
		}
		j.done <- err
	}
}

// Handled returns the number of input records whose outputs are durable.
func (r *Reconciler) Handled() int64 { return r.handled.Load() }

// item is one decoded input record.
type item struct {
	fact   *Fact
	source string
	dup    bool // flagged duplicate by ingest
	err    error
}

// decodeAll decodes a batch on every core; decoding is pure.
func (r *Reconciler) decodeAll(msgs []kafka.Message) []item {
	items := make([]item, len(msgs))
	workers := runtime.GOMAXPROCS(0)
	if len(msgs) < 64 || workers < 2 {
		for i := range msgs {
			items[i] = r.decode(&msgs[i])
		}
		return items
	}
	var wg sync.WaitGroup
	chunk := (len(msgs) + workers - 1) / workers
	for lo := 0; lo < len(msgs); lo += chunk {
		hi := min(lo+chunk, len(msgs))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				items[i] = r.decode(&msgs[i])
			}
		}()
	}
	wg.Wait()
	return items
}

func (r *Reconciler) decode(m *kafka.Message) item {
	it := r.decodeValue(m)
	if it.fact != nil && it.fact.Received.IsZero() {
		// CDC rows and sink results carry no ingest time: their record's
		// Kafka timestamp is when they arrived.
		it.fact.Received = m.Time.UTC()
	}
	return it
}

func (r *Reconciler) decodeValue(m *kafka.Message) item {
	switch m.Topic {
	case r.t.stripe, r.t.kit, r.t.circle:
		provider := schemas.ProviderStripe
		switch m.Topic {
		case r.t.kit:
			provider = schemas.ProviderKit
		case r.t.circle:
			provider = schemas.ProviderCircle
		}
		f, dup, err := decodeRecord(provider, m.Value)
		return item{source: provider, fact: f, dup: dup, err: err}
	case r.t.sinks:
		var res schemas.SinkResult
		if err := json.Unmarshal(m.Value, &res); err != nil {
			return item{source: SourceSink, err: fmt.Errorf("not a sink result: %w", err)}
		}
		return item{source: SourceSink, fact: FactFromSink(&res)}
	}
	if r.t.cdc[m.Topic] {
		c, err := DecodeChange(m.Value)
		if err != nil {
			return item{source: SourceApp, err: err}
		}
		if c.V > schemas.CDCVersion {
			return item{source: SourceApp, err: fmt.Errorf("cdc version %d is newer than %d", c.V, schemas.CDCVersion)}
		}
		return item{source: SourceApp, fact: r.set.FactFromChange(c)}
	}
	return item{source: "unknown", err: fmt.Errorf("record from unexpected topic %s", m.Topic)}
}

// maxPartitionBytes bounds what one produce call sends to one partition.
// The broker refuses a record batch over its message.max.bytes (1 MB by
// default), and one call's records for a partition travel as one batch.
const maxPartitionBytes = 768 << 10

// write writes msgs in order, in as few produce calls as the per-partition
// bound allows (records for different partitions go out in parallel).
func (r *Reconciler) write(ctx context.Context, msgs []kafka.Message) error {
	for len(msgs) > 0 {
		n := r.fit(msgs)
		if err := r.writeOnce(ctx, msgs[:n]); err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// fit returns how many leading msgs fit one produce call: it places each
// record on its partition as the producer's balancer will (murmur2 of the
// key over the topic's partitions) and stops before a partition overflows.
func (r *Reconciler) fit(msgs []kafka.Message) int {
	bal := kgo.Murmur2Balancer{Consistent: true}
	used := map[string]int{}
	for i, m := range msgs {
		sz := len(m.Key) + len(m.Value) + 64
		for _, h := range m.Headers {
			sz += len(h.Key) + len(h.Value)
		}
		part := 0
		if parts := r.partitions[m.Topic]; len(parts) > 0 {
			part = bal.Balance(m, parts...)
		}
		k := m.Topic + "|" + strconv.Itoa(part)
		if i > 0 && used[k]+sz > maxPartitionBytes {
			return i
		}
		used[k] += sz
	}
	return len(msgs)
}

// writeOnce writes msgs, retrying while Kafka is unavailable. Once ctx ends it
// stops retrying: the batch is not acknowledged and is read again on restart.
func (r *Reconciler) writeOnce(ctx context.Context, msgs []kafka.Message) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		// Writes run under their own deadline so a shutdown that arrives
		// mid-batch still lets the batch finish.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
		err := r.prod.Write(wctx, msgs...)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		r.log.WarnContext(ctx, "writing outputs failed; retrying", "attempt", attempt, "records", len(msgs), "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// loadPartitions learns the partition count of every output topic, so write
// can keep each partition's share of a call under the broker's limit.
func (r *Reconciler) loadPartitions(ctx context.Context) error {
	cl := kafka.NewClient(r.cfg.KafkaBrokers)
	r.partitions = map[string][]int{}
	for _, t := range []string{r.t.identity, r.t.entitlements, r.t.decisions, r.t.mismatches, r.t.seen, r.t.dlq} {
		n, err := cl.Partitions(ctx, t)
		if err != nil {
			return fmt.Errorf("reconcile: partitions of %s: %w", t, err)
		}
		if n == 0 {
			return fmt.Errorf("reconcile: topic %s does not exist (run launchready migrate)", t)
		}
		parts := make([]int, n)
		for i := range parts {
			parts[i] = i
		}
		r.partitions[t] = parts
	}
	return nil
}

// sweep re-evaluates customers whose grace period has passed, so access ends
// on time without waiting for Stripe's next event.
func (r *Reconciler) sweep(ctx context.Context) {
	t := time.NewTicker(r.set.Sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.sweepOnce(ctx); err != nil && ctx.Err() == nil {
				r.log.ErrorContext(ctx, "grace sweep failed", "err", err)
			}
		}
	}
}

func (r *Reconciler) sweepOnce(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	b := r.newBatch()
	for _, id := range sortedKeys(r.grace) {
		if now.Before(r.grace[id]) {
			continue
		}
		root, ok := r.state.Lookup(id)
		if !ok {
			delete(r.grace, id)
			continue
		}
		old, c := r.state.Reevaluate(root)
		if !old.same(c.verdict) {
			b.decide(c, "grace period ended: "+c.verdict.Rule, entSummaryOf(old), c.verdict)
		}
		b.diff(root)
	}
	return b.flush(ctx)
}

func (r *Reconciler) ensureCDCTopics(ctx context.Context) error {
	var specs []kafka.TopicSpec
	for t := range r.t.cdc {
		// No configs: the CDC stage owns these topics' settings.
		specs = append(specs, kafka.TopicSpec{Name: t, Partitions: r.cfg.KafkaPartitions, Replicas: r.cfg.KafkaReplicas})
	}
	if err := kafka.NewClient(r.cfg.KafkaBrokers).EnsureTopics(ctx, specs); err != nil {
		return fmt.Errorf("reconcile: cdc topics: %w", err)
	}
	return nil
}

func instanceID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}
