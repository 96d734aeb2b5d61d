package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	kgo "github.com/segmentio/kafka-go"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/testenv"
)

// harness is one integration test's share of the real stack: its own topics
// and ClickHouse database, a producer, and a connection for assertions.
type harness struct {
	t      testing.TB
	cfg    *config.Config
	prod   *kafka.Producer
	conn   driver.Conn
	health *obs.Health
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	cfg, _ := testenv.Migrated(t)
	return harnessFor(t, cfg)
}

func harnessFor(t testing.TB, cfg *config.Config) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := chdb.Open(ctx, cfg, cfg.ClickHouseDatabase)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	prod := kafka.NewProducer(cfg.KafkaBrokers, kafka.WriterOptions{})
	t.Cleanup(func() { prod.Close() })
	return &harness{t: t, cfg: cfg, prod: prod, conn: conn, health: obs.NewHealth()}
}

func testLogger() *slog.Logger {
	if os.Getenv("LR_TEST_LOG") != "" {
		return obs.NewLogger(os.Stderr, "debug")
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// writer is a running audit Writer and the means to stop it.
type writer struct {
	*Writer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// start runs a Writer until stop (or the test's end); tweak may set test
// hooks before it runs.
func (h *harness) start(opt Options, tweak func(*Writer)) *writer {
	h.t.Helper()
	env := &app.Env{Cfg: h.cfg, Log: testLogger(), Health: h.health}
	w, err := New(env, opt)
	if err != nil {
		h.t.Fatal(err)
	}
	if tweak != nil {
		tweak(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rw := &writer{Writer: w, cancel: cancel, done: make(chan error, 1)}
	go func() { rw.done <- w.Run(ctx) }()
	h.t.Cleanup(func() { _ = rw.stop() })
	return rw
}

// stop ends the writer and waits for Run to return; it reports Run's error.
func (w *writer) stop() error {
	w.cancel()
	w.once.Do(func() {
		select {
		case w.err = <-w.done:
		case <-time.After(30 * time.Second):
			w.err = context.DeadlineExceeded
		}
	})
	return w.err
}

// produce writes one record and waits for Kafka to acknowledge it. at is
// its Kafka timestamp (zero: the broker's time).
func (h *harness) produce(topic, key, envelope string, v any, at time.Time) {
	h.t.Helper()
	m, err := kafka.JSON(h.cfg.Topic(topic), key, envelope, v)
	if err != nil {
		h.t.Fatal(err)
	}
	m.Time = at
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.prod.Write(ctx, m); err != nil {
		h.t.Fatalf("produce to %s: %v", topic, err)
	}
}

// distinct counts a table's distinct record identities.
func (h *harness) distinct(table, id string) int {
	h.t.Helper()
	var n uint64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.conn.QueryRow(ctx, "SELECT uniqExact("+id+") FROM "+h.cfg.ClickHouseDatabase+"."+table).Scan(&n); err != nil {
		h.t.Fatalf("count %s: %v", table, err)
	}
	return int(n)
}

// waitFor polls until every table holds the wanted number of distinct
// records, or fails after timeout with what it saw.
func (h *harness) waitFor(timeout time.Duration, want map[string]int) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := map[string]int{}
		ok := true
		for table, n := range want {
			got[table] = h.distinct(table, idColumn(table))
			if got[table] < n {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("after %s: records %v, want %v", timeout, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func idColumn(table string) string {
	if table == "decisions" {
		return "decision_id"
	}
	return "record_id"
}

// ensureTopic creates a topic of the test's own (CDC topics are not in
// schemas.Topics) and deletes it when the test ends.
func ensureTopic(t testing.TB, h *harness, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := kafka.NewClient(h.cfg.KafkaBrokers)
	if err := cl.EnsureTopics(ctx, []kafka.TopicSpec{{Name: name, Partitions: h.cfg.KafkaPartitions, Replicas: h.cfg.KafkaReplicas}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = cl.DeleteTopics(ctx, name)
	})
}

// waitCommitted waits until the writer's consumer group has committed every
// record of its topics: only then is every record stored and acknowledged.
func (h *harness) waitCommitted(w *writer, timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	cl := &kgo.Client{Addr: kgo.TCP(h.cfg.KafkaBrokers...), Timeout: 10 * time.Second}
	admin := kafka.NewClient(h.cfg.KafkaBrokers)
	var behind []string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		behind = nil
		topics := w.Status().Topics
		req := &kgo.OffsetFetchRequest{GroupID: w.opt.GroupID, Topics: map[string][]int{}}
		ends := map[string]map[int]int64{}
		for _, tp := range topics {
			e, err := admin.EndOffsets(ctx, tp)
			if err != nil {
				behind = append(behind, tp+": "+err.Error())
				continue
			}
			ends[tp] = e
			for p := range e {
				req.Topics[tp] = append(req.Topics[tp], p)
			}
		}
		res, err := cl.OffsetFetch(ctx, req)
		cancel()
		if err != nil {
			behind = append(behind, err.Error())
		} else {
			for tp, e := range ends {
				committed := map[int]int64{}
				for _, p := range res.Topics[tp] {
					committed[p.Partition] = p.CommittedOffset
				}
				for p, end := range e {
					if end > 0 && committed[p] < end {
						behind = append(behind, fmt.Sprintf("%s[%d] %d/%d", tp, p, committed[p], end))
					}
				}
			}
		}
		if len(topics) > 0 && len(behind) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	h.t.Fatalf("consumer group %s not caught up after %s: %v", w.opt.GroupID, timeout, behind)
}

// store decodes records as the writer does and inserts them directly,
// without Kafka, for tests of the queries.
func (h *harness) store(msgs ...kafka.Message) {
	h.t.Helper()
	r, _ := NewRedactor(DefaultDrop)
	d := newDecoder(r, h.cfg.TopicPrefix)
	b := &batch{}
	for i := range msgs {
		d.add(b, &msgs[i])
	}
	if b.dlq.recordID != nil {
		h.t.Fatalf("undecodable test records: %v", b.dlq.reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := insert(ctx, h.conn, h.cfg.ClickHouseDatabase, b); err != nil {
		h.t.Fatal(err)
	}
}

// msg is a Kafka record of v in topic (relative to the test's prefix).
func (h *harness) msg(topic string, v any, at time.Time) kafka.Message {
	h.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		h.t.Fatal(err)
	}
	return kafka.Message{Topic: h.cfg.Topic(topic), Value: b, Time: at}
}
