package cdc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/kafka"
)

func TestTrackerConfirmsOnlyContiguous(t *testing.T) {
	t.Parallel()
	var tr tracker
	tr.start(100)
	a, _ := tr.open(2, 110, nil) // two sub-batches
	b, _ := tr.open(1, 120, nil)
	c, _ := tr.open(0, 130, nil) // a checkpoint-only round
	if got := tr.confirmed(); got != 100 {
		t.Fatalf("confirmed %d before any ack", got)
	}
	mustDone(t, &tr, b)
	if got := tr.confirmed(); got != 100 {
		t.Fatalf("confirmed %d while round a is unacknowledged", got)
	}
	mustDone(t, &tr, a)
	if got := tr.confirmed(); got != 100 {
		t.Fatalf("confirmed %d with half of round a acknowledged", got)
	}
	mustDone(t, &tr, a)
	if got := tr.confirmed(); got != 130 {
		t.Fatalf("confirmed %d, want 130 once a, b and c are done", got)
	}
	if tr.outstanding() != 0 {
		t.Fatalf("%d rounds outstanding", tr.outstanding())
	}
	if err := tr.done(c); err == nil {
		t.Error("a settled round was acknowledged again")
	}
	if _, err := tr.open(0, 125, nil); err == nil {
		t.Error("a checkpoint behind the confirmed one was accepted")
	}
}

func TestTrackerRunsCallbacksInOrder(t *testing.T) {
	t.Parallel()
	var tr tracker
	var got []string
	var advanced []LSN
	tr.onAdvance = func(l LSN) { advanced = append(advanced, l) }
	a, _ := tr.open(1, 0, []func(){func() { got = append(got, "a") }})
	b, _ := tr.open(1, 50, []func(){func() { got = append(got, "b") }})
	mustDone(t, &tr, b)
	if len(got) != 0 {
		t.Fatalf("callback of b ran before a was acknowledged: %v", got)
	}
	mustDone(t, &tr, a)
	if fmt.Sprint(got) != "[a b]" || fmt.Sprint(advanced) != "[0/32]" {
		t.Fatalf("callbacks %v, advances %v", got, advanced)
	}
}

func mustDone(t *testing.T, tr *tracker, id uint64) {
	t.Helper()
	if err := tr.done(id); err != nil {
		t.Fatal(err)
	}
}

// fakeWriter stands in for Kafka: it records what was written, per key in
// order, after a random delay, and fails when fail says so.
type fakeWriter struct {
	mu      sync.Mutex
	written map[string][]string // key → values in write order
	all     int
	fail    func(msgs []kafka.Message) error
	delay   time.Duration
	onWrite func([]kafka.Message)
}

func (w *fakeWriter) Write(ctx context.Context, msgs ...kafka.Message) error {
	if w.delay > 0 {
		time.Sleep(time.Duration(rand.Int64N(int64(w.delay))))
	}
	if w.fail != nil {
		if err := w.fail(msgs); err != nil {
			return err
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.written == nil {
		w.written = map[string][]string{}
	}
	for _, m := range msgs {
		k := m.Topic + "|" + string(m.Key)
		w.written[k] = append(w.written[k], string(m.Value))
		w.all++
	}
	if w.onWrite != nil {
		w.onWrite(msgs)
	}
	return nil
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestPipelineOrderAndAcks: through concurrent writers with random delays
// and transient failures, each key's records arrive in order, and the
// confirmed position never covers a record Kafka has not acknowledged.
func TestPipelineOrderAndAcks(t *testing.T) {
	t.Parallel()
	rel := newRelation(1, "public", "t", "lr.cdc.public.t", []relColumnDef{{Name: "id", TypeOID: 23, Key: true}}, nil)
	var tr tracker
	var mu sync.Mutex
	acked := map[string]bool{} // record value → acknowledged
	posOf := map[LSN][]string{}
	var failures int
	w := &fakeWriter{delay: 2 * time.Millisecond}
	w.fail = func(msgs []kafka.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if failures < 5 && rand.IntN(10) == 0 {
			failures++
			return errors.New("broker hiccup")
		}
		return nil
	}
	w.onWrite = func(msgs []kafka.Message) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			acked[string(m.Value)] = true
		}
	}
	tr.onAdvance = func(l LSN) {
		mu.Lock()
		defer mu.Unlock()
		for p, vals := range posOf {
			if p > l {
				continue
			}
			for _, v := range vals {
				if !acked[v] {
					t.Errorf("position %d confirmed before record %s was acknowledged", l, v)
				}
			}
		}
	}
	p := newPipeline(context.Background(), quietLog(), []Writer{w}, &tr, newSlotMetrics("unit_pipeline"), pipelineConfig{Shards: 3, RoundRecords: 7, MergeRecords: 20, RetryWindow: 10 * time.Second})
	stop := make(chan struct{})
	const txns, keys = 400, 13
	var sent []string
	for i := 0; i < txns; i++ {
		var chunk []item
		n := 1 + rand.IntN(4)
		var vals []string
		for j := 0; j < n; j++ {
			k := rand.IntN(keys)
			v := fmt.Sprintf(`{"k":%d,"seq":%d}`, k, len(sent))
			sent = append(sent, v)
			vals = append(vals, v)
			key := []byte(fmt.Sprintf(`{"id":%d}`, k))
			chunk = append(chunk, item{rec: record{rel: rel, op: "c", value: []byte(v), key: key}})
		}
		pos := LSN(1000 + i*10)
		mu.Lock()
		posOf[pos] = vals
		mu.Unlock()
		chunk = append(chunk, item{checkpoint: pos})
		if err := p.send(chunk, stop); err != nil {
			t.Fatal(err)
		}
	}
	p.close()
	if err := p.wait(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := tr.confirmed(), LSN(1000+(txns-1)*10); got != want {
		t.Errorf("confirmed %d, want %d", got, want)
	}
	// Per key: the first occurrences of each record keep the send order
	// (a retried batch may repeat records, never reorder first writes).
	for k, vals := range w.written {
		seen := map[string]bool{}
		last := -1
		for _, v := range vals {
			if seen[v] {
				continue
			}
			seen[v] = true
			var kk, s int
			if _, err := fmt.Sscanf(v, `{"k":%d,"seq":%d}`, &kk, &s); err != nil {
				t.Fatal(err)
			}
			if s < last {
				t.Errorf("key %s: record %d written after %d", k, s, last)
			}
			last = s
		}
	}
	if w.all < len(sent) {
		t.Errorf("%d records written, %d sent", w.all, len(sent))
	}
}

// A writer that keeps failing fails the pipeline after the retry window,
// and nothing is confirmed.
func TestPipelineFailsAfterRetryWindow(t *testing.T) {
	t.Parallel()
	rel := newRelation(1, "public", "t", "lr.cdc.public.t", []relColumnDef{{Name: "id", TypeOID: 23, Key: true}}, nil)
	var tr tracker
	tr.start(5)
	w := &fakeWriter{fail: func([]kafka.Message) error { return kafka.ErrUnavailable }}
	p := newPipeline(context.Background(), quietLog(), []Writer{w}, &tr, newSlotMetrics("unit_pipeline_fail"), pipelineConfig{RetryWindow: 300 * time.Millisecond})
	if err := p.send([]item{{rec: record{rel: rel, op: "c", value: []byte("{}"), key: []byte(`{"id":1}`)}}, {checkpoint: 50}}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.failed():
	case <-time.After(10 * time.Second):
		t.Fatal("pipeline did not fail")
	}
	p.close()
	if err := p.wait(time.Second); !errors.Is(err, kafka.ErrUnavailable) {
		t.Errorf("pipeline error %v", err)
	}
	if tr.confirmed() != 5 {
		t.Errorf("confirmed %d although nothing was written", tr.confirmed())
	}
}

func TestBudgetBlocksUntilReleased(t *testing.T) {
	t.Parallel()
	b := newBudget(100)
	ctx := context.Background()
	if err := b.acquire(ctx, 80, time.Hour, nil); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- b.acquire(ctx, 50, time.Hour, nil) }()
	select {
	case <-got:
		t.Fatal("acquired past the budget")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(80)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	// Larger than the whole budget: allowed once nothing else is in flight.
	b.release(50)
	if err := b.acquire(ctx, 500, time.Hour, nil); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.acquire(cctx, 1, time.Hour, nil); err == nil {
		t.Error("acquire ignored its context")
	}
}
