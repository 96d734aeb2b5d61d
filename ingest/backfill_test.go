package ingest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/httpx"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/testenv"
	"github.com/launchready/launchready/schemas"
	"github.com/launchready/launchready/simulate/stripe"
)

func TestStripeBackfillReplaysTheWindowWithTheSameDedupKeys(t *testing.T) {
	t.Parallel()
	cfg, pool := testenv.Migrated(t)
	withSecrets(cfg)
	now := time.Now()
	since := now.Add(-72*time.Hour + 10*time.Minute) // between two events, away from the edge
	var all []stripe.Event
	inWindow := 0
	for i := range 230 {
		created := now.Add(-time.Duration(i) * 20 * time.Minute)
		build := stripe.Builders[[]string{"invoice.paid", "customer.subscription.updated", "charge.refunded", "customer.updated"}[i%4]]
		all = append(all, build(stripe.Params{Created: created}))
		if created.After(since) {
			inWindow++
		}
	}
	key := "sk_test_backfill_" + testenv.ID()
	api := stripe.NewServer(key)
	api.Add(all...)
	srv := httptest.NewServer(api)
	defer srv.Close()

	// Ten events arrived by webhook before the outage.
	s := newStack(t, cfg, pool)
	for _, e := range all[:10] {
		if code, _, a := post(t, s.srv.Client(), s.url("stripe"), e.Body, signedStripe(e.Body)); code != http.StatusOK {
			t.Fatalf("webhook: %d %s", code, a)
		}
	}

	if err := s.rcv.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg.StripeBaseURL = srv.URL
	cfg.StripeAPIKey = "sk_test_wrong_key_123456"
	producer := kafka.NewProducer(cfg.KafkaBrokers, kafka.WriterOptions{})
	defer producer.Close()
	wrong, err := NewBackfill(cfg, discardLog(), producer, s.rcv.Dedup(), BackfillOptions{Since: since})
	if err != nil {
		t.Fatal(err)
	}
	if err := wrong.Run(context.Background()); !httpx.IsPermanent(err) {
		t.Fatalf("wrong key: err = %v, want a permanent 401", err)
	}

	cfg.StripeAPIKey = config.Secret(key)
	var progress []BackfillProgress
	b, err := NewBackfill(cfg, discardLog(), producer, s.rcv.Dedup(), BackfillOptions{Since: since, Progress: func(p BackfillProgress) { progress = append(progress, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	last := progress[len(progress)-1]
	if !last.Done || last.Pages != 3 || last.Events != inWindow || last.Duplicates != 10 || last.New != inWindow-10 || last.Fraction(time.Now()) != 1 {
		t.Fatalf("progress %+v (of %d updates), want 3 pages, %d events, 10 duplicates", last, len(progress), inWindow)
	}
	if len(progress) != 3 || progress[0].Fraction(now) <= 0 || progress[0].Fraction(now) >= progress[1].Fraction(now) {
		t.Fatalf("progress must be reported per page and grow: %+v", progress)
	}
	recs := readRaw(t, cfg, "stripe")
	if len(recs) != 10+inWindow {
		t.Fatalf("%d records, want %d", len(recs), 10+inWindow)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Source == schemas.SourceBackfill {
			if r.Verification != schemas.VerifiedAPI || r.RequestID == "" {
				t.Fatalf("backfill record: %+v", r.RawEvent)
			}
			if seen[r.EventID] {
				t.Fatalf("backfill stored %s twice", r.EventID)
			}
			seen[r.EventID] = true
		}
	}
	for i, e := range all {
		if want := e.Created.After(since); seen[e.ID] != want {
			t.Fatalf("event %d (%s old): replayed %v, want %v", i, now.Sub(e.Created).Round(time.Minute), seen[e.ID], want)
		}
	}

	// A second run finds everything already seen.
	progress = nil
	if err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if last := progress[len(progress)-1]; last.Duplicates != inWindow || last.New != 0 {
		t.Fatalf("second run: %+v", last)
	}
}
