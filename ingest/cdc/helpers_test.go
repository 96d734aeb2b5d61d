package cdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	kgo "github.com/segmentio/kafka-go"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/migrate"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/pg"
	"github.com/launchready/launchready/internal/testenv"
	"github.com/launchready/launchready/schemas"
)

// fixture is one integration test's corner of the shared stack: a slot and
// a publication named after it, tables of its own in the app database, its
// own topic prefix; all dropped at the end (an abandoned slot pins WAL for
// everyone).
type fixture struct {
	t     testing.TB
	id    string
	cfg   *config.Config
	app   *pgxpool.Pool
	state *pgxpool.Pool
	mu    sync.Mutex
	names []string // tables created, unqualified
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	cfg := testenv.Config(t)
	id := testenv.ID()
	cfg.CDCSlot = "lr_t" + id
	cfg.CDCPublication = "lr_t" + id
	cfg.ShutdownTimeout = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	appPool, err := pg.Connect(ctx, cfg.PostgresURL, "app database")
	if err != nil {
		t.Fatal(err)
	}
	statePool, err := pg.Connect(ctx, cfg.StatePostgresURL, "state database")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Postgres(ctx, statePool); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, id: id, cfg: cfg, app: appPool, state: statePool}
	t.Cleanup(f.cleanup)
	return f
}

func (f *fixture) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dropSlot(ctx, f.t, f.app, f.cfg.CDCSlot)
	_, _ = f.app.Exec(ctx, "DROP PUBLICATION IF EXISTS "+quoteIdent(f.cfg.CDCPublication))
	_, _ = f.state.Exec(ctx, "DELETE FROM lr_cdc_snapshots WHERE slot = $1", f.cfg.CDCSlot)
	var topics []string
	for _, n := range f.names {
		_, _ = f.app.Exec(ctx, "DROP TABLE IF EXISTS "+quoteIdent(n))
		topics = append(topics, f.topic(n))
	}
	if len(topics) > 0 && os.Getenv("LR_TEST_KEEP") == "" {
		_ = kafka.NewClient(f.cfg.KafkaBrokers).DeleteTopics(ctx, topics...)
	}
	f.app.Close()
	f.state.Close()
}

// dropSlot ends whatever holds the slot and drops it.
func dropSlot(ctx context.Context, t testing.TB, pool *pgxpool.Pool, slot string) {
	for i := 0; i < 50; i++ {
		_, _ = pool.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, slot)
		_, err := pool.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
		if err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("replication slot %s could not be dropped: drop it by hand, it pins WAL", slot)
}

// table returns a unique table name for this test.
func (f *fixture) table(name string) string {
	n := "t" + f.id + "_" + name
	f.mu.Lock()
	f.names = append(f.names, n)
	f.mu.Unlock()
	return n
}

func (f *fixture) topic(table string) string {
	return f.cfg.Topic(schemas.CDCTopic("public", table))
}

func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.app.Exec(ctx, sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

// tablesSetting sets LR_CDC_TABLES.
func (f *fixture) tablesSetting(tables ...string) {
	f.cfg.CDCTables = nil
	for _, t := range tables {
		f.cfg.CDCTables = append(f.cfg.CDCTables, "public."+t)
	}
}

// running is a CDC stage running in the test process.
type running struct {
	c      *CDC
	env    *app.Env
	cancel context.CancelFunc
	done   chan error
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("LR_TEST_LOG") != "" {
		return obs.NewLogger(os.Stderr, "debug")
	}
	return obs.NewLogger(io.Discard, "error")
}

// start runs a stage until the test ends (or stop is called).
func (f *fixture) start(opt Options) *running {
	f.t.Helper()
	health := obs.NewHealth()
	env := &app.Env{Cfg: f.cfg, Log: testLogger(f.t), Health: health, Mux: health.Mux()}
	c, err := New(env, opt)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, env: env, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	f.t.Cleanup(func() { r.stop(f.t) })
	return r
}

// stop cancels the stage and waits for it; a second call returns at once.
func (r *running) stop(t testing.TB) error {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(30 * time.Second):
		t.Error("cdc did not stop within 30s")
		return nil
	}
}

// waitStreaming waits until the stage reports ready.
func (r *running) waitStreaming(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-r.done:
			t.Fatalf("cdc stopped: %v", err)
		default:
		}
		if ready, _ := r.env.Health.Result(context.Background()); ready {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, detail := r.env.Health.Result(context.Background())
	t.Fatalf("cdc not streaming after 60s: %v", detail)
}

// change is one record read back from Kafka.
type change struct {
	schemas.Change
	Topic     string
	Key       string
	Partition int
	Offset    int64
	Header    string
}

// collector reads topics from their beginning, continuously.
type collector struct {
	mu   sync.Mutex
	recs []change
	errs []error
	stop context.CancelFunc
	wg   sync.WaitGroup
}

func (f *fixture) collect(tables ...string) *collector {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	col := &collector{stop: cancel}
	cl := kafka.NewClient(f.cfg.KafkaBrokers)
	for _, tb := range tables {
		topic := f.topic(tb)
		// The stage creates the topics; create them here too so reading
		// can start first (same spec: EnsureTopics is idempotent).
		if err := cl.EnsureTopics(ctx, []kafka.TopicSpec{topicSpec(f.cfg, "public", tb)}); err != nil {
			f.t.Fatal(err)
		}
		n, err := cl.Partitions(ctx, topic)
		if err != nil || n == 0 {
			f.t.Fatalf("partitions of %s: %d %v", topic, n, err)
		}
		for p := 0; p < n; p++ {
			r := kgo.NewReader(kgo.ReaderConfig{Brokers: f.cfg.KafkaBrokers, Topic: topic, Partition: p, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 50 * time.Millisecond})
			col.wg.Add(1)
			go func() {
				defer col.wg.Done()
				defer r.Close()
				for {
					m, err := r.ReadMessage(ctx)
					if err != nil {
						if ctx.Err() == nil && !errors.Is(err, io.EOF) {
							col.mu.Lock()
							col.errs = append(col.errs, err)
							col.mu.Unlock()
						}
						return
					}
					var c change
					if err := json.Unmarshal(m.Value, &c.Change); err != nil {
						col.mu.Lock()
						col.errs = append(col.errs, fmt.Errorf("record %s[%d]@%d: %w", m.Topic, m.Partition, m.Offset, err))
						col.mu.Unlock()
						continue
					}
					c.Topic, c.Key, c.Partition, c.Offset = m.Topic, string(m.Key), m.Partition, m.Offset
					c.Header = kafka.HeaderValue(m, schemas.HeaderEnvelope)
					col.mu.Lock()
					col.recs = append(col.recs, c)
					col.mu.Unlock()
				}
			}()
		}
	}
	f.t.Cleanup(col.close)
	return col
}

func (c *collector) close() { c.stop(); c.wg.Wait() }

// snapshot returns a copy of what was read so far.
func (c *collector) snapshot() []change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]change(nil), c.recs...)
}

// waitFor polls until cond holds for what was read, or fails the test.
func (c *collector) waitFor(t testing.TB, timeout time.Duration, what string, cond func([]change) bool) []change {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		recs := c.snapshot()
		c.mu.Lock()
		errs := c.errs
		c.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("reading Kafka: %v", errs)
		}
		if cond(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; read %d records", timeout, what, len(recs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// byKey groups records by topic and key, each group in partition order
// (which is the order Kafka keeps for one key).
func byKey(recs []change) map[string][]change {
	out := map[string][]change{}
	for _, r := range recs {
		out[r.Topic+"|"+r.Key] = append(out[r.Topic+"|"+r.Key], r)
	}
	for _, g := range out {
		sort.Slice(g, func(i, j int) bool { return g[i].Offset < g[j].Offset })
	}
	return out
}

// count returns how many records match.
func count(recs []change, match func(change) bool) int {
	n := 0
	for _, r := range recs {
		if match(r) {
			n++
		}
	}
	return n
}

// slotConfirmed reads the slot's confirmed_flush_lsn.
func (f *fixture) slotConfirmed() LSN {
	f.t.Helper()
	si, err := readSlot(context.Background(), f.app, f.cfg.CDCSlot)
	if err != nil {
		f.t.Fatal(err)
	}
	return si.Confirmed
}

func (f *fixture) currentLSN() LSN {
	f.t.Helper()
	var s string
	if err := f.app.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&s); err != nil {
		f.t.Fatal(err)
	}
	l, err := ParseLSN(s)
	if err != nil {
		f.t.Fatal(err)
	}
	return l
}

// waitConfirmed waits until the slot confirmed at least l.
func (f *fixture) waitConfirmed(l LSN, timeout time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for f.slotConfirmed() < l {
		if time.Now().After(deadline) {
			f.t.Fatalf("slot confirmed %s, still behind %s after %s", f.slotConfirmed(), l, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func keyOf(kv ...any) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(kv[i])
		v, _ := json.Marshal(kv[i+1])
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.String()
}

func lsn(t testing.TB, s string) LSN {
	t.Helper()
	l, err := ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// keyJSON renders a record's key map the way json.Marshal does.
func keyJSON(t testing.TB, m map[string]any) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func assertMap(t testing.TB, what string, got, want map[string]any) {
	t.Helper()
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("%s:\n got  %s\n want %s", what, gb, wb)
	}
}

func assertColumns(t testing.TB, what string, got, want []schemas.Column) {
	t.Helper()
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("%s:\n got  %s\n want %s", what, gb, wb)
	}
}
