package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/testenv"
	"github.com/launchready/launchready/schemas"
	"github.com/launchready/launchready/simulate/stripe"
)

// stack is a receiver on the real Kafka and Postgres, served over loopback.
type stack struct {
	cfg      *config.Config
	pool     *pgxpool.Pool
	producer *kafka.Producer
	rcv      *Receiver
	srv      *httptest.Server
	env      *app.Env
}

func newStack(t testing.TB, cfg *config.Config, pool *pgxpool.Pool, opts ...Option) *stack {
	return newStackWith(t, cfg, pool, kafka.WriterOptions{}, opts...)
}

func newStackWith(t testing.TB, cfg *config.Config, pool *pgxpool.Pool, wo kafka.WriterOptions, opts ...Option) *stack {
	t.Helper()
	producer := kafka.NewProducer(cfg.KafkaBrokers, wo)
	t.Cleanup(func() { producer.Close() })
	health := obs.NewHealth()
	env := &app.Env{Cfg: cfg, Log: discardLog(), Health: health, Mux: http.NewServeMux()}
	rcv, err := New(env, producer, pool, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(env.Mux)
	t.Cleanup(srv.Close)
	return &stack{cfg: cfg, pool: pool, producer: producer, rcv: rcv, srv: srv, env: env}
}

func (s *stack) url(provider string) string { return s.srv.URL + "/webhooks/" + provider }

// topicCount is how many records the provider's raw topic holds.
func topicCount(t testing.TB, cfg *config.Config, provider string) int64 {
	t.Helper()
	ends, err := retry(func(ctx context.Context) (map[int]int64, error) {
		return kafka.NewClient(cfg.KafkaBrokers).EndOffsets(ctx, cfg.Topic("raw."+provider))
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ends {
		n += e
	}
	return n
}

type rawRecord struct {
	schemas.RawEvent
	key       string
	partition int
	envelope  string
}

// readRaw returns every record of the provider's raw topic.
func readRaw(t testing.TB, cfg *config.Config, provider string) []rawRecord {
	t.Helper()
	out, err := retry(func(ctx context.Context) ([]rawRecord, error) {
		var out []rawRecord
		err := kafka.ReadToEnd(ctx, cfg.KafkaBrokers, cfg.Topic("raw."+provider), func(m kafka.Message) error {
			r := rawRecord{key: string(m.Key), partition: m.Partition, envelope: kafka.HeaderValue(m, schemas.HeaderEnvelope)}
			if err := json.Unmarshal(m.Value, &r.RawEvent); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
		return out, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readRejections sums lr.ingest.rejections by provider/reason/status, and
// checks no record carries a body or a signature.
func readRejections(t testing.TB, cfg *config.Config) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	_, err := retry(func(ctx context.Context) (struct{}, error) {
		clear(out)
		return struct{}{}, kafka.ReadToEnd(ctx, cfg.KafkaBrokers, cfg.Topic("ingest.rejections"), func(m kafka.Message) error {
			if strings.Contains(string(m.Value), "invoice") || strings.Contains(string(m.Value), "v1=") {
				t.Errorf("a rejection record carries the delivery: %s", m.Value)
			}
			var r schemas.Rejection
			if err := json.Unmarshal(m.Value, &r); err != nil {
				return err
			}
			if r.RecordID == "" || len(r.RequestIDs) == 0 || r.FirstAt.IsZero() || r.LastAt.Before(r.FirstAt) {
				t.Errorf("rejection record %s", m.Value)
			}
			out[fmt.Sprintf("%s/%s/%d", r.Provider, r.Reason, r.HTTPStatus)] += r.Count
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// retry runs fn until it succeeds or 20 s passed: right after a topic is
// created a busy broker may still answer "not leader" for a moment.
func retry[T any](fn func(ctx context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		v, err := fn(ctx)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return v, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestSignedStripeEventIsInKafkaBeforeThe2xx(t *testing.T) {
	t.Parallel()
	cfg, pool := testenv.Migrated(t)
	s := newStack(t, withSecrets(cfg), pool)
	e := stripe.CheckoutSessionCompleted(stripe.Params{CustomerID: "cus_" + testenv.ID(), UserID: "user_42"})
	code, _, answer := post(t, s.srv.Client(), s.url("stripe"), e.Body, signedStripe(e.Body))
	// No waiting: the record must already be there when the answer arrives.
	if n := topicCount(t, cfg, "stripe"); code != http.StatusOK || n != 1 {
		t.Fatalf("status %d (%s), %d records in %s at the time of the answer, want 200 and 1", code, answer, n, cfg.Topic("raw.stripe"))
	}
	recs := readRaw(t, cfg, "stripe")
	r := recs[0]
	if r.EventID != e.ID || r.key != e.Customer() || r.envelope != "raw/1" || r.Type != "checkout.session.completed" ||
		r.Verification != schemas.VerifiedSignature || r.Duplicate || !r.ProviderTime.Equal(e.Created) || r.RequestID == "" {
		t.Fatalf("record: %+v key %q envelope %q", r.RawEvent, r.key, r.envelope)
	}
	if ready, detail := s.env.Health.Result(context.Background()); !ready {
		t.Fatalf("not ready: %v", detail)
	}
}

func TestSameEventFiveTimesYieldsOneOriginalAndFourDuplicates(t *testing.T) {
	t.Parallel()
	cfg, pool := testenv.Migrated(t)
	withSecrets(cfg)
	s := newStack(t, cfg, pool)
	e := stripe.InvoicePaid(stripe.Params{CustomerID: "cus_" + testenv.ID()})
	for i := range 5 {
		if i == 3 {
			// A restart: the old receiver flushes, a fresh one must still
			// know the event.
			if err := s.rcv.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			s = newStack(t, cfg, pool)
		}
		// Stripe re-signs each retry with a new timestamp.
		hdr := map[string]string{"Stripe-Signature": stripe.Sign(stripeSecret, e.Body, time.Now().Add(-time.Duration(i)*time.Second))}
		if code, _, a := post(t, s.srv.Client(), s.url("stripe"), e.Body, hdr); code != http.StatusOK {
			t.Fatalf("delivery %d: %d %s", i, code, a)
		}
	}
	if err := s.rcv.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := readRaw(t, cfg, "stripe")
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5", len(recs))
	}
	var original *rawRecord
	dups := 0
	for i := range recs {
		if recs[i].EventID != e.ID {
			t.Fatalf("unexpected event %s", recs[i].EventID)
		}
		if recs[i].Duplicate {
			dups++
		} else {
			original = &recs[i]
		}
	}
	if original == nil || dups != 4 {
		t.Fatalf("%d duplicates and original %v, want 4 and one original", dups, original != nil)
	}
	for _, r := range recs {
		if r.Duplicate && (r.FirstSeenAt == nil || !r.FirstSeenAt.Equal(original.ReceivedAt.Truncate(time.Microsecond))) {
			t.Fatalf("duplicate's first_seen_at %v, want the original's received_at %v", r.FirstSeenAt, original.ReceivedAt)
		}
		if r.partition != original.partition {
			t.Fatal("copies of one customer's event landed on different partitions")
		}
	}
	var times int
	if err := pool.QueryRow(context.Background(), `SELECT times_seen FROM lr_seen_events WHERE dedup_key = $1`, "stripe:"+e.ID).Scan(&times); err != nil || times != 5 {
		t.Fatalf("times_seen = %d (%v), want 5", times, err)
	}
}

func TestRejectedEventsNeverReachTheTopic(t *testing.T) {
	t.Parallel()
	cfg, pool := testenv.Migrated(t)
	s := newStack(t, withSecrets(cfg), pool)
	s.rcv.refusedEvery = 50 * time.Millisecond
	ctx, stop := context.WithCancel(context.Background())
	running := make(chan error, 1)
	go func() { running <- s.rcv.Run(ctx) }()
	e := stripe.InvoicePaymentFailed(stripe.Params{})
	tampered := []byte(strings.Replace(string(e.Body), `"open"`, `"paid"`, 1))
	bad := []struct {
		name    string
		body    []byte
		headers map[string]string
	}{
		{"tampered body", tampered, signedStripe(e.Body)},
		{"stale timestamp", e.Body, map[string]string{"Stripe-Signature": stripe.Sign(stripeSecret, e.Body, time.Now().Add(-6*time.Minute))}},
		{"wrong secret", e.Body, map[string]string{"Stripe-Signature": stripe.Sign("whsec_not_ours_123456", e.Body, time.Now())}},
		{"missing header", e.Body, nil},
	}
	for _, b := range bad {
		if code, _, a := post(t, s.srv.Client(), s.url("stripe"), b.body, b.headers); code != http.StatusUnauthorized {
			t.Errorf("%s: status %d (%s), want 401", b.name, code, a)
		}
	}
	if n := topicCount(t, cfg, "stripe"); n != 0 {
		t.Fatalf("%d records stored from rejected requests", n)
	}
	// They are counted, without their bodies, in lr.ingest.rejections.
	want := map[string]int64{"stripe/signature_mismatch/401": 2, "stripe/stale_timestamp/401": 1, "stripe/missing_signature/401": 1}
	var got map[string]int64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = readRejections(t, cfg); fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rejection counts %v, want %v", got, want)
	}
	stop()
	if err := <-running; err != nil {
		t.Fatal(err)
	}
	// The same event, properly signed, is the one and only record.
	if code, _, a := post(t, s.srv.Client(), s.url("stripe"), e.Body, signedStripe(e.Body)); code != http.StatusOK {
		t.Fatalf("valid delivery: %d %s", code, a)
	}
	recs := readRaw(t, cfg, "stripe")
	if len(recs) != 1 || recs[0].Duplicate || !strings.Contains(string(recs[0].Body), `"open"`) {
		t.Fatalf("records after the valid delivery: %d (duplicate %v)", len(recs), len(recs) == 1 && recs[0].Duplicate)
	}
}

func TestKitDeliverySplitsAndCirclePushIsStored(t *testing.T) {
	t.Parallel()
	cfg, pool := testenv.Migrated(t)
	s := newStack(t, withSecrets(cfg), pool)
	id := testenv.ID()
	delivery := `{"delivery_id":1,"events":[` +
		`{"id":"` + id + `-1","type":"subscriber.tag_add","created":"2026-03-02T10:15:00Z","data":{"subscriber":{"id":111,"email_address":"a@example.org","state":"active"}}},` +
		`{"id":"` + id + `-2","type":"subscriber.tag_add","created":"2026-03-02T10:15:01Z","data":{"subscriber":{"id":222,"email_address":"b@example.org","state":"active"}}},` +
		`{"id":"` + id + `-3","type":"subscriber.tag_add","created":"2026-03-02T10:15:02Z","data":{"subscriber":{"id":111,"email_address":"a@example.org","state":"active"}}}]}`
	for range 2 { // Kit's retry re-sends the batch with a fresh signature
		if code, _, a := post(t, s.srv.Client(), s.url("kit"), []byte(delivery), signedKit([]byte(delivery))); code != http.StatusOK {
			t.Fatalf("kit: %d %s", code, a)
		}
	}
	recs := readRaw(t, cfg, "kit")
	if len(recs) != 6 {
		t.Fatalf("%d kit records, want 6", len(recs))
	}
	byKey := map[string]int{}
	dups := 0
	for _, r := range recs {
		if r.Duplicate {
			dups++
		}
		if p, ok := byKey[r.key]; ok && p != r.partition {
			t.Fatal("one subscriber's events on two partitions")
		}
		byKey[r.key] = r.partition
	}
	if dups != 3 || len(byKey) != 2 {
		t.Fatalf("%d duplicates over keys %v, want 3 over 2 subscribers", dups, byKey)
	}

	push := []byte(`{"source":"circle","event":"member.tag_added","occurred_at":"2026-03-02T10:25:00Z","community_member_id":31337,"email":"maria@example.org","member_tag_id":77,"run":"` + id + `"}`)
	if code, _, a := post(t, s.srv.Client(), s.url("circle"), push, map[string]string{"X-Circle-Push-Secret": "wrong"}); code != http.StatusUnauthorized {
		t.Fatalf("circle wrong secret: %d %s", code, a)
	}
	if code, _, a := post(t, s.srv.Client(), s.url("circle"), push, map[string]string{"X-Circle-Push-Secret": circleSecret}); code != http.StatusOK {
		t.Fatalf("circle: %d %s", code, a)
	}
	c := readRaw(t, cfg, "circle")
	if len(c) != 1 || c[0].key != "31337" || c[0].Source != schemas.SourcePush || c[0].Verification != schemas.VerifiedSharedSecret {
		t.Fatalf("circle records: %+v", c)
	}
}

func TestDedupWindowIgnoresAndPrunesOldSightings(t *testing.T) {
	t.Parallel()
	cfg, pool := testenv.Migrated(t)
	ctx := context.Background()
	d := NewDedup(pool, cfg.DedupWindow, discardLog())
	old, fresh := "test:old-"+testenv.ID(), "test:fresh-"+testenv.ID()
	if _, err := pool.Exec(ctx, `INSERT INTO lr_seen_events (dedup_key, first_seen_at) VALUES ($1, now() - $2::interval)`,
		old, (cfg.DedupWindow + time.Hour).String()); err != nil {
		t.Fatal(err)
	}
	if err := d.Record(ctx, []Seen{{Key: fresh, At: time.Now()}, {Key: fresh, At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	seen, err := d.Lookup(ctx, []string{old, fresh, "test:never"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := seen[old]; ok || len(seen) != 1 {
		t.Fatalf("lookup %v: a sighting older than the window must not count", seen)
	}
	if _, err := d.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM lr_seen_events WHERE dedup_key = ANY($1)`, []string{old, fresh}).Scan(&n)
	if n != 1 {
		t.Fatalf("%d rows left, want only the fresh one", n)
	}
	var times int
	_ = pool.QueryRow(ctx, `SELECT times_seen FROM lr_seen_events WHERE dedup_key = $1`, fresh).Scan(&times)
	if times != 2 {
		t.Fatalf("times_seen %d, want 2 (two sightings in one batch)", times)
	}
}
