package ingest

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/migrate"
	"github.com/launchready/launchready/internal/testenv"
	"github.com/launchready/launchready/simulate/stripe"
)

// With its Kafka stopped the receiver answers 503 + Retry-After and stores
// nothing; once Kafka is back the provider's retries are accepted, and the
// topic holds every event exactly once.
func TestKafkaDownAnswers503AndRetriesAreAcceptedAfterRestart(t *testing.T) {
	t.Parallel()
	k := testenv.PrivateKafka(t)
	shared, pool := testenv.Migrated(t)
	cfg := *shared
	cfg.KafkaBrokers = []string{k.Addr}
	withSecrets(&cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := kafka.NewClient(cfg.KafkaBrokers).EnsureTopics(ctx, migrate.TopicSpecs(&cfg)); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, &cfg, pool, WithWriteTimeout(10*time.Second), WithRetryAfter(3*time.Second))
	send := func(e stripe.Event) (int, http.Header) {
		code, h, _ := post(t, s.srv.Client(), s.url("stripe"), e.Body, signedStripe(e.Body))
		return code, h
	}
	// Warm the fresh broker and the producer's connections on another
	// topic, so the counted phase meets a broker that answers in time.
	warm := []byte(`{"delivery_id":1,"events":[{"id":"warm-` + testenv.ID() + `","type":"subscriber.created","created":"2026-03-02T10:15:00Z"}]}`)
	for try := 0; ; try++ {
		code, _, _ := post(t, s.srv.Client(), s.url("kit"), warm, signedKit(warm))
		if code == http.StatusOK {
			break
		}
		if try == 30 {
			t.Fatalf("private Kafka does not take records: status %d", code)
		}
		time.Sleep(time.Second)
	}

	var before, during []stripe.Event
	for range 10 {
		e := stripe.InvoicePaid(stripe.Params{})
		if code, _ := send(e); code != http.StatusOK {
			t.Fatalf("with Kafka up: status %d", code)
		}
		before = append(before, e)
	}

	k.Stop()
	for range 5 {
		e := stripe.SubscriptionDeleted(stripe.Params{})
		start := time.Now()
		code, h := send(e)
		t.Logf("answer with Kafka down after %s", time.Since(start).Round(time.Millisecond))
		if code != http.StatusServiceUnavailable {
			t.Fatalf("with Kafka down: status %d, want 503", code)
		}
		if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra != 3 {
			t.Fatalf("Retry-After %q, want 3", h.Get("Retry-After"))
		}
		during = append(during, e)
	}
	if ready, _ := s.env.Health.Result(context.Background()); ready {
		t.Fatal("readiness must fail while Kafka is down")
	}

	k.Start()
	// The provider retries each refused event until it is accepted.
	deadline := time.Now().Add(60 * time.Second)
	for _, e := range during {
		for {
			code, _ := send(e)
			if code == http.StatusOK {
				break
			}
			if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("retry after restart: status %d", code)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	recs := readRaw(t, &cfg, "stripe")
	want := map[string]bool{}
	for _, e := range append(before, during...) {
		want[e.ID] = true
	}
	got := map[string]int{}
	for _, r := range recs {
		got[r.EventID]++
		if r.Duplicate {
			t.Errorf("event %s flagged duplicate: the refused attempt was never stored", r.EventID)
		}
	}
	if len(recs) != 15 || len(got) != 15 {
		t.Fatalf("%d records of %d events, want 15 of 15", len(recs), len(got))
	}
	for id := range want {
		if got[id] != 1 {
			t.Fatalf("event %s stored %d times, want once", id, got[id])
		}
	}
}
