package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// sentinel marks where produce stamps a raw record's received_at.
var sentinel = []byte(`"received_at":"2000-01-01T00:00:00Z"`)

// benchLoad is a load as Kafka records for the harness's topics; raw records
// carry the sentinel received_at, which produce replaces with the time it
// writes them (the record's Kafka timestamp), as ingest would.
func benchLoad(b *testing.B, h *harness, histories, offset int64) []kafka.Message {
	_, in := load(b, histories, offset)
	msgs := make([]kafka.Message, len(in))
	for i, x := range in {
		v := x.value
		if strings.HasPrefix(x.topic, "raw.") {
			var raw schemas.RawEvent
			if err := json.Unmarshal(v, &raw); err != nil {
				b.Fatal(err)
			}
			raw.ReceivedAt = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
			v, _ = json.Marshal(raw)
			if !bytes.Contains(v, sentinel) {
				b.Fatalf("no sentinel in %s", v)
			}
		}
		msgs[i] = kafka.Message{Topic: h.cfg.Topic(x.topic), Key: []byte(x.key), Value: v}
	}
	return msgs
}

// produce writes msgs in chunks, stamping each chunk's Kafka timestamp and
// received_at, at most perSecond records a second (0: as fast as Kafka
// takes them).
func produce(b *testing.B, h *harness, msgs []kafka.Message, chunk, perSecond int) {
	start := time.Now()
	for i := 0; i < len(msgs); i += chunk {
		if perSecond > 0 {
			due := start.Add(time.Duration(float64(i) / float64(perSecond) * float64(time.Second)))
			time.Sleep(time.Until(due))
		}
		part := append([]kafka.Message(nil), msgs[i:min(i+chunk, len(msgs))]...)
		now := time.Now().Truncate(time.Millisecond) // Kafka keeps milliseconds
		stamp := []byte(`"received_at":"` + now.UTC().Format(time.RFC3339Nano) + `"`)
		for j := range part {
			part[j].Time = now
			part[j].Value = bytes.Replace(part[j].Value, sentinel, stamp, 1)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := h.prod.Write(ctx, part...)
		cancel()
		if err != nil {
			b.Fatalf("produce: %v", err)
		}
	}
}

// latencies returns, for every entitlement record written since since, the
// delay from its newest causing raw record (IngestedAt: that record's
// received_at, stamped with its Kafka timestamp) to its own Kafka timestamp.
func latencies(b *testing.B, h *harness, since time.Time) []time.Duration {
	var out []time.Duration
	readAll(h, "entitlements", func(_ string, e schemas.Entitlement, m kafka.Message) {
		if !e.IngestedAt.Before(since) && !m.Time.Before(since) {
			out = append(out, m.Time.Sub(e.IngestedAt))
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// profileWindow writes a CPU profile of the measured window alone (not of
// the load's generation) to $LR_BENCH_CPUPROFILE when it is set.
func profileWindow(b *testing.B) (stop func()) {
	path := os.Getenv("LR_BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	i := int(float64(len(ds)-1) * p)
	return float64(ds[i].Microseconds()) / 1000
}

func waitHandled(b *testing.B, r *Reconciler, want int64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for r.Handled() < want {
		if time.Now().After(deadline) {
			b.Fatalf("reconciler handled %d of %d records in %s", r.Handled(), want, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// warmUp sends one record and waits until the reconciler handled it: the
// consumer has joined its group and owns the partitions.
func warmUp(b *testing.B, h *harness, r *Reconciler) {
	raw := rawInput(schemas.RawEvent{V: 1, Provider: "kit", EventID: "warm-up", Type: "subscriber.created", ObjectID: "1",
		ProviderTime: time.Now(), ReceivedAt: time.Now(), Body: []byte(`{"id":"warm-up","type":"subscriber.created","data":{"subscriber":{"id":1,"email_address":"warm@example.org"}}}`)})
	before := r.Handled()
	h.send(raw)
	waitHandled(b, r, before+1, time.Minute)
}

// BenchmarkReconcile measures the reconciler on the real Kafka: records in
// from the raw, CDC and sink topics, facts, identities, entitlements,
// decisions and mismatches out, every batch acknowledged by all in-sync
// replicas before its offsets are committed. The load is realistic histories
// (Stripe events built from Stripe's own fixtures, ~2.8 kB a record, Kit,
// Circle, CDC rows, sink results), a fifth duplicated, shuffled.
//
//	drain: the load is written first; then a reconciler starts and events/s
//	is records over the time from its first to its last acknowledged batch.
//	paced_1000: records arrive at 1,000 a second for ten seconds; p50/p95/p99
//	run from each entitlement record's newest causing raw record (its Kafka
//	timestamp, which is also the received_at the reconciler copies to
//	IngestedAt) to the entitlement record's own Kafka timestamp.
func BenchmarkReconcile(b *testing.B) {
	// The binary's runtime settings (its GC target), restored afterwards.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	app.TuneRuntime()
	b.Run("drain", func(b *testing.B) {
		h := newHarness(b)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			msgs := benchLoad(b, h, 4000, int64(1_000_000+i*10_000))
			produce(b, h, msgs, 250, 0)
			n := int64(len(msgs))
			msgs = nil
			runtime.GC() // the load's memory is not the reconciler's
			r := h.start(Options{})
			b.StartTimer()
			waitHandled(b, r, 1, 2*time.Minute)
			stopProfile := profileWindow(b)
			first, cpu0 := time.Now(), cpuTime()
			waitHandled(b, r, n, 5*time.Minute)
			el, cpu := time.Since(first), cpuTime()-cpu0
			stopProfile()
			b.ReportMetric(float64(n)/el.Seconds(), "events/s")
			b.ReportMetric(el.Seconds(), "drain_s")
			// The reconciler's own CPU per event (this process; the broker's
			// is not included): throughput on an idle machine is about the
			// cores left by the broker divided by this.
			b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu_us/event")
			b.ReportMetric(float64(n), "events")
		}
	})
	b.Run("paced_1000", func(b *testing.B) {
		h := newHarness(b)
		r := h.start(Options{})
		warmUp(b, h, r)
		for i := 0; i < b.N; i++ {
			msgs := benchLoad(b, h, 850, int64(2_000_000+i*10_000))
			msgs = msgs[:min(len(msgs), 10_000)]
			total := r.Handled() + int64(len(msgs))
			b.ResetTimer()
			start := time.Now().Truncate(time.Millisecond)
			produce(b, h, msgs, 10, 1000)
			waitHandled(b, r, total, 2*time.Minute)
			b.StopTimer()
			ls := latencies(b, h, start)
			b.ReportMetric(pct(ls, .50), "p50_ms")
			b.ReportMetric(pct(ls, .95), "p95_ms")
			b.ReportMetric(pct(ls, .99), "p99_ms")
			b.ReportMetric(float64(len(ls)), "entitlements")
		}
	})
}
