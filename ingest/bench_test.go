package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/migrate"
	"github.com/launchready/launchready/internal/testenv"
	"github.com/launchready/launchready/simulate/stripe"
)

// benchKnob reads an optional integer or duration setting of the benchmark.
func benchKnob[T int | time.Duration](name string, def T) T {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out any = def
	switch any(def).(type) {
	case int:
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			out = n
		}
	case time.Duration:
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			out = d
		}
	}
	return out.(T)
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIngestStripeWebhooks measures sustained signed-webhook throughput
// on this machine: many concurrent clients post distinct, freshly signed
// Stripe events (built from Stripe's own fixtures, 1–4 KiB) over real HTTP
// on loopback to the receiver, which answers each only after the real Kafka
// (acks=all) holds it, having looked it up in the Postgres dedup window. It
// reports webhooks/s and the latency percentiles the clients saw, and the
// CPU this process (receiver and clients) spent per webhook; then it checks
// the topic holds every accepted event.
//
//	go test -run '^$' -bench BenchmarkIngestStripeWebhooks -benchtime 1x ./ingest/
//
// Knobs: LR_BENCH_CLIENTS (default 128), LR_BENCH_REQUESTS (30000),
// LR_BENCH_PARTITIONS (default 6, the LR_KAFKA_PARTITIONS default),
// LR_BENCH_LINGER (the producer's batch timeout; default that of
// ProducerOptions).
func BenchmarkIngestStripeWebhooks(b *testing.B) {
	clients := benchKnob("LR_BENCH_CLIENTS", 128)
	requests := benchKnob("LR_BENCH_REQUESTS", 30000)
	partitions := benchKnob("LR_BENCH_PARTITIONS", 6)
	linger := benchKnob("LR_BENCH_LINGER", ProducerOptions.BatchTimeout)

	cfg, pool := testenv.Migrated(b)
	if partitions != cfg.KafkaPartitions {
		cfg.TopicPrefix = "lr.t" + testenv.ID() + "."
		cfg.KafkaPartitions = partitions
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := kafka.NewClient(cfg.KafkaBrokers).EnsureTopics(ctx, migrate.TopicSpecs(cfg)); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { testenv.DropTopicsAndDB(cfg) })
	}
	s := newStackWith(b, withSecrets(cfg), pool, kafka.WriterOptions{BatchTimeout: linger})

	// A few realistic templates; each request gets a unique event id.
	types := []string{"invoice.paid", "customer.subscription.updated", "checkout.session.completed", "charge.refunded", "customer.updated", "invoice.payment_failed"}
	templates := make([][]byte, len(types))
	for i, typ := range types {
		templates[i] = stripe.Builders[typ](stripe.Params{EventID: fmt.Sprintf("evt_BENCHTEMPLATE%02d", i)}).Body
	}
	run := testenv.ID()
	body := func(n int) []byte {
		k := n % len(templates)
		return bytes.Replace(templates[k], fmt.Appendf(nil, "evt_BENCHTEMPLATE%02d", k), fmt.Appendf(nil, "evt_bench%s%09d", run, n), 1)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}, Timeout: 30 * time.Second}
	send := func(n int) (time.Duration, int, error) {
		payload := body(n)
		req, _ := http.NewRequest(http.MethodPost, s.url("stripe"), bytes.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Stripe-Signature", stripe.Sign(stripeSecret, payload, time.Now()))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start), resp.StatusCode, nil
	}

	var next atomic.Int64
	// work sends total events from all clients. In warm-up a 503 (a topic
	// still electing leaders) is retried as a provider would; measured, any
	// answer but 200 fails the benchmark.
	work := func(total int, warmup bool) ([]time.Duration, time.Duration, error) {
		lat := make([]time.Duration, total)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		base := next.Load()
		start := time.Now()
		for range clients {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= base+int64(total) {
						return
					}
					d, code, err := send(int(i))
					for try := 0; warmup && err == nil && code == http.StatusServiceUnavailable && try < 50; try++ {
						time.Sleep(200 * time.Millisecond)
						d, code, err = send(int(i))
					}
					if err == nil && code != http.StatusOK {
						err = fmt.Errorf("status %d", code)
					}
					if err != nil {
						mu.Lock()
						firstErr = err
						mu.Unlock()
						return
					}
					lat[i-base] = d
				}
			})
		}
		wg.Wait()
		next.Store(base + int64(total))
		return lat, time.Since(start), firstErr
	}

	warm := 2000
	if _, _, err := work(warm, true); err != nil {
		b.Fatal(err)
	}
	sent := int64(warm)
	var all []time.Duration
	var elapsed, cpu time.Duration
	b.ResetTimer()
	for b.Loop() {
		cpu0 := processCPU()
		lat, d, err := work(requests, false)
		cpu += processCPU() - cpu0
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, lat...)
		elapsed += d
		sent += int64(requests)
	}
	b.StopTimer()
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "webhooks/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.95), "p95_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(all)), "cpu_us/webhook")
	b.ReportMetric(0, "ns/op")
	if err := s.rcv.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	if n := topicCount(b, cfg, "stripe"); n != sent {
		b.Fatalf("%d records in the topic after %d accepted webhooks", n, sent)
	}
}
