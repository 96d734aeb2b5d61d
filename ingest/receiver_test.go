package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	dto "github.com/prometheus/client_model/go"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/schemas"
	"github.com/launchready/launchready/simulate/stripe"
)

func TestReceiverRejectsBadInputWithoutStoringIt(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t, map[string]string{"LR_WEBHOOK_MAX_BODY": "4096"})
	w := &fakeWriter{}
	srv, _ := unitServer(t, cfg, w, &memDedup{})
	body := stripe.InvoicePaid(stripe.Params{}).Body
	noID := []byte(`{"type":"invoice.paid","created":1772446500}`)
	big := []byte(`{"id":"evt_big","type":"x","created":1,"pad":"` + strings.Repeat("a", 5000) + `"}`)
	cases := []struct {
		name    string
		method  string
		path    string
		ctype   string
		body    []byte
		headers map[string]string
		want    int
	}{
		{"tampered body", "POST", "/webhooks/stripe", "", bytes.Replace(body, []byte(`"invoice.paid"`), []byte(`"invoice.void"`), 1), signedStripe(body), 401},
		{"stale timestamp", "POST", "/webhooks/stripe", "", body, map[string]string{"Stripe-Signature": stripe.Sign(stripeSecret, body, time.Now().Add(-10*time.Minute))}, 401},
		{"wrong secret", "POST", "/webhooks/stripe", "", body, map[string]string{"Stripe-Signature": stripe.Sign("whsec_wrong", body, time.Now())}, 401},
		{"missing header", "POST", "/webhooks/stripe", "", body, nil, 401},
		{"malformed JSON", "POST", "/webhooks/stripe", "", []byte(`{"id":`), signedStripe([]byte(`{"id":`)), 400},
		{"missing event id", "POST", "/webhooks/stripe", "", noID, signedStripe(noID), 400},
		{"body over the limit", "POST", "/webhooks/stripe", "", big, signedStripe(big), 413},
		{"wrong method", "GET", "/webhooks/stripe", "", nil, nil, 405},
		{"wrong content type", "POST", "/webhooks/stripe", "text/plain", body, signedStripe(body), 415},
		{"kit without signature", "POST", "/webhooks/kit", "", []byte(kitDeliveryBody), nil, 401},
		{"kit signed with the stripe secret", "POST", "/webhooks/kit", "", []byte(kitDeliveryBody), map[string]string{"X-Kit-Signature": stripe.Sign(stripeSecret, []byte(kitDeliveryBody), time.Now())}, 401},
		{"kit legacy body while legacy is off", "POST", "/webhooks/kit", "", []byte(`{"subscriber":{"id":1}}`), nil, 401},
		{"circle wrong secret", "POST", "/webhooks/circle", "", []byte(`{"event":"member.created"}`), map[string]string{"X-Circle-Push-Secret": "nope"}, 401},
		{"circle no secret", "POST", "/webhooks/circle", "", []byte(`{"event":"member.created"}`), nil, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(c.method, srv.URL+c.path, bytes.NewReader(c.body))
			ct := c.ctype
			if ct == "" {
				ct = "application/json; charset=utf-8"
			}
			req.Header.Set("Content-Type", ct)
			for k, v := range c.headers {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var answer map[string]any
			raw := new(bytes.Buffer)
			_, _ = raw.ReadFrom(resp.Body)
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.want, raw)
			}
			if err := json.Unmarshal(raw.Bytes(), &answer); err != nil || answer["error"] == "" || answer["request_id"] == "" {
				t.Fatalf("answer is not a small JSON error: %s", raw)
			}
			if raw.Len() > 200 {
				t.Fatalf("answer too long (%d bytes): %s", raw.Len(), raw)
			}
			for _, secretish := range []string{stripeSecret, kitSecret, circleSecret, "evt_", "invoice", "panic", "goroutine", ".go:"} {
				if strings.Contains(raw.String(), secretish) {
					t.Fatalf("answer leaks %q: %s", secretish, raw)
				}
			}
		})
	}
	t.Cleanup(func() {
		if n := len(w.records(t)); n != 0 {
			t.Errorf("%d records stored from bad input", n)
		}
	})
}

func TestReceiverStoresBeforeAnswering(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t, nil)
	var mu sync.Mutex
	answered := false
	w := &fakeWriter{fail: func(msgs []kafka.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if answered {
			return errors.New("written after the answer")
		}
		return nil
	}}
	srv, _ := unitServer(t, cfg, w, &memDedup{})
	e := stripe.ChargeRefunded(stripe.Params{CustomerID: "cus_42"})
	code, _, answer := post(t, srv.Client(), srv.URL+"/webhooks/stripe", e.Body, signedStripe(e.Body))
	mu.Lock()
	answered = true
	mu.Unlock()
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, answer)
	}
	recs := w.records(t)
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	r := recs[0]
	if r.EventID != e.ID || r.Provider != "stripe" || r.ObjectID != "cus_42" || r.Type != "charge.refunded" || r.Verification != schemas.VerifiedSignature ||
		r.Source != schemas.SourceWebhook || r.RequestID == "" || r.ReceivedAt.IsZero() || r.Duplicate || r.V != schemas.RawVersion {
		t.Fatalf("record: %+v", r)
	}
	if string(r.Body) != string(e.Body) {
		t.Fatal("record body is not the delivered body byte for byte")
	}
	w.mu.Lock()
	m := w.msgs[0]
	w.mu.Unlock()
	if string(m.Key) != "cus_42" || m.Topic != "lr.raw.stripe" || kafka.HeaderValue(m, schemas.HeaderEnvelope) != "raw/1" {
		t.Fatalf("message key %q topic %q envelope %q", m.Key, m.Topic, kafka.HeaderValue(m, schemas.HeaderEnvelope))
	}
}

func TestReceiverAnswers503WhenKafkaFails(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t, nil)
	w := &fakeWriter{fail: func([]kafka.Message) error { return fmt.Errorf("%w: broker down", kafka.ErrUnavailable) }}
	d := &memDedup{}
	srv, _ := unitServer(t, cfg, w, d, WithRetryAfter(7*time.Second))
	e := stripe.InvoicePaid(stripe.Params{})
	code, h, answer := post(t, srv.Client(), srv.URL+"/webhooks/stripe", e.Body, signedStripe(e.Body))
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") != "7" {
		t.Fatalf("status %d Retry-After %q: %s", code, h.Get("Retry-After"), answer)
	}
	if strings.Contains(string(answer), "broker") {
		t.Fatalf("answer leaks the cause: %s", answer)
	}
	if seen, _ := d.Lookup(context.Background(), []string{"stripe:" + e.ID}); len(seen) != 0 {
		t.Fatal("an event Kafka did not take was recorded as seen: its retry would be flagged duplicate")
	}
}

func TestReceiverFlagsDuplicatesAndSplitsKit(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t, map[string]string{"LR_KIT_LEGACY_WEBHOOKS": "true"})
	w := &fakeWriter{}
	srv, _ := unitServer(t, cfg, w, &memDedup{})
	for i := range 3 {
		code, _, answer := post(t, srv.Client(), srv.URL+"/webhooks/kit", []byte(kitDeliveryBody), signedKit([]byte(kitDeliveryBody)))
		var a struct{ Received, Duplicates int }
		_ = json.Unmarshal(answer, &a)
		wantDups := 2
		if i == 0 {
			wantDups = 0
		}
		if code != 200 || a.Received != 2 || a.Duplicates != wantDups {
			t.Fatalf("delivery %d: %d %s", i, code, answer)
		}
	}
	legacy := []byte(`{"subscriber":{"id":4455667,"email_address":"maria@example.org","state":"active"}}`)
	if code, _, answer := post(t, srv.Client(), srv.URL+"/webhooks/kit?event=subscriber.subscriber_activate", legacy, nil); code != 200 {
		t.Fatalf("legacy: %d %s", code, answer)
	}
	recs := w.records(t)
	if len(recs) != 7 {
		t.Fatalf("%d records, want 7", len(recs))
	}
	for i, r := range recs[:6] {
		if r.Duplicate != (i >= 2) || (r.Duplicate && r.FirstSeenAt == nil) {
			t.Fatalf("record %d: duplicate %v first seen %v", i, r.Duplicate, r.FirstSeenAt)
		}
	}
	if l := recs[6]; l.Verification != schemas.VerifiedNone || l.Type != "subscriber.subscriber_activate" || l.ObjectID != "4455667" {
		t.Fatalf("legacy record: %+v", l)
	}
}

func TestConcurrentCopiesYieldOneOriginal(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t, nil)
	w := &fakeWriter{fail: func([]kafka.Message) error { time.Sleep(5 * time.Millisecond); return nil }}
	srv, _ := unitServer(t, cfg, w, &memDedup{})
	e := stripe.InvoicePaid(stripe.Params{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if code, _, a := post(t, srv.Client(), srv.URL+"/webhooks/stripe", e.Body, signedStripe(e.Body)); code != 200 {
				t.Errorf("status %d: %s", code, a)
			}
		})
	}
	wg.Wait()
	originals := 0
	for _, r := range w.records(t) {
		if !r.Duplicate {
			originals++
		}
	}
	if originals != 1 || len(w.records(t)) != 8 {
		t.Fatalf("%d originals among %d records, want 1 among 8", originals, len(w.records(t)))
	}
}

func TestUnconfiguredSecretAnswers503(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t, map[string]string{"LR_STRIPE_WEBHOOK_SECRET": ""})
	srv, _ := unitServer(t, cfg, &fakeWriter{}, &memDedup{})
	e := stripe.InvoicePaid(stripe.Params{})
	code, h, _ := post(t, srv.Client(), srv.URL+"/webhooks/stripe", e.Body, signedStripe(e.Body))
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q: an unconfigured endpoint must make the provider retry", code, h.Get("Retry-After"))
	}
}

func TestGroupBatchesConcurrentCallers(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sizes []int
	release := make(chan struct{})
	g := newGroup(func(ctx context.Context, items []int) (int, error) {
		mu.Lock()
		sizes = append(sizes, len(items))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-release // hold the only runner so the others queue up
		}
		sum := 0
		for _, i := range items {
			sum += i
		}
		return sum, nil
	}, 100, 1, time.Second)
	var wg sync.WaitGroup
	results := make([]int, 11)
	wg.Go(func() { results[0], _ = g.do(context.Background(), []int{1}) })
	for {
		mu.Lock()
		n := len(sizes)
		mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for i := 1; i <= 10; i++ {
		wg.Go(func() { results[i], _ = g.do(context.Background(), []int{i, i}) })
	}
	for {
		g.mu.Lock()
		n := len(g.queue)
		g.mu.Unlock()
		if n == 10 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if len(sizes) != 2 || sizes[1] != 20 {
		t.Fatalf("batch sizes %v, want [1 20]", sizes)
	}
	if results[0] != 1 || results[5] != 110 {
		t.Fatalf("results %v", results)
	}
}

func TestClaimSerialisesSameKeys(t *testing.T) {
	t.Parallel()
	var c claims
	rel, err := c.Claim(context.Background(), []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := c.Claim(context.Background(), []string{"c"})
	if err != nil {
		t.Fatal("a disjoint claim must not wait")
	}
	other()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Claim(ctx, []string{"b"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("overlapping claim did not wait: %v", err)
	}
	done := make(chan struct{})
	go func() {
		r, err := c.Claim(context.Background(), []string{"b", "z"})
		if err == nil {
			r()
		}
		close(done)
	}()
	rel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("waiter not woken by release")
	}
}

func TestEncodeRawKeepsTheBodyByteForByte(t *testing.T) {
	t.Parallel()
	body := []byte("{\n  \"id\": \"evt_1\",\n  \"note\": \"<b>&</b>\"\n}")
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	ev := schemas.RawEvent{V: 1, Provider: "stripe", EventID: "evt_1", Type: "x", ProviderTime: at, ReceivedAt: at, Source: "webhook", Verification: "signature", Body: body}
	m, err := encodeRaw("lr.raw.stripe", "cus_1", &ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(m.Value, body) || !json.Valid(m.Value) || string(ev.Body) != string(body) {
		t.Fatalf("value %s", m.Value)
	}
	var back schemas.RawEvent
	if err := json.Unmarshal(m.Value, &back); err != nil || string(back.Body) != string(body) || back.EventID != "evt_1" || !back.ReceivedAt.Equal(at) {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	if kafka.HeaderValue(m, schemas.HeaderEnvelope) != "raw/1" || string(m.Key) != "cus_1" {
		t.Fatal("header or key lost")
	}
}

func counterValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestMetricsCountAndLogsCarryNoPayload(t *testing.T) {
	// Not parallel: it reads global counters and must see only its own requests.
	cfg := unitConfig(t, nil)
	var logs bytes.Buffer
	var logMu sync.Mutex
	w := &fakeWriter{}
	r := newReceiver(cfg, obs.NewLogger(&lockedWriter{w: &logs, mu: &logMu}, "debug"), w, &memDedup{})
	mux := http.NewServeMux()
	r.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	received := counterValue(t, mReceived.WithLabelValues("stripe"))
	verified := counterValue(t, mVerified.WithLabelValues("stripe", schemas.VerifiedSignature))
	mismatch := counterValue(t, mRejected.WithLabelValues("stripe", "signature_mismatch"))
	dups := counterValue(t, mDuplicates.WithLabelValues("stripe", schemas.SourceWebhook))
	records := counterValue(t, mRecords.WithLabelValues("stripe", schemas.SourceWebhook))

	e := stripe.CustomerUpdated(stripe.Params{Email: "secret.person@example.org", PreviousEmail: "old.person@example.org"})
	sig := stripe.Sign(stripeSecret, e.Body, time.Now())
	for range 2 {
		if code, _, _ := post(t, srv.Client(), srv.URL+"/webhooks/stripe", e.Body, map[string]string{"Stripe-Signature": sig}); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	badSig := stripe.Sign("whsec_attacker_000000", e.Body, time.Now())
	if code, _, _ := post(t, srv.Client(), srv.URL+"/webhooks/stripe", e.Body, map[string]string{"Stripe-Signature": badSig}); code != 401 {
		t.Fatalf("status %d", code)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		got, want float64
	}{
		"received":   {counterValue(t, mReceived.WithLabelValues("stripe")) - received, 3},
		"verified":   {counterValue(t, mVerified.WithLabelValues("stripe", schemas.VerifiedSignature)) - verified, 2},
		"rejected":   {counterValue(t, mRejected.WithLabelValues("stripe", "signature_mismatch")) - mismatch, 1},
		"duplicates": {counterValue(t, mDuplicates.WithLabelValues("stripe", schemas.SourceWebhook)) - dups, 1},
		"records":    {counterValue(t, mRecords.WithLabelValues("stripe", schemas.SourceWebhook)) - records, 2},
	} {
		if c.got != c.want {
			t.Errorf("%s went up by %v, want %v", name, c.got, c.want)
		}
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if !strings.Contains(out, "signature_mismatch") || !strings.Contains(out, `"component"`) && !strings.Contains(out, "provider") {
		t.Fatalf("the rejection was not logged with its reason:\n%s", out)
	}
	for _, leak := range []string{stripeSecret, "whsec_attacker", sig, badSig, "secret.person", "old.person", e.ID, "Stripe-Signature"} {
		if strings.Contains(out, leak) {
			t.Fatalf("log carries %q:\n%s", leak, out)
		}
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// gatedDedup blocks every Record until the test lets it through.
type gatedDedup struct {
	memDedup
	gate chan struct{}
}

func (g *gatedDedup) Record(ctx context.Context, seen []Seen) error {
	<-g.gate
	return g.memDedup.Record(ctx, seen)
}

func TestSightingsAreRecordedAfterTheAnswerUntilFlush(t *testing.T) {
	t.Parallel()
	d := &gatedDedup{gate: make(chan struct{})}
	srv, r := unitServer(t, unitConfig(t, nil), &fakeWriter{}, d)
	e := stripe.InvoicePaid(stripe.Params{})
	if code, _, _ := post(t, srv.Client(), srv.URL+"/webhooks/stripe", e.Body, signedStripe(e.Body)); code != 200 {
		t.Fatalf("status %d", code)
	}
	// The answer came while the sighting is still being recorded; the
	// claim on the event id is held until it is.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.Flush(ctx); err == nil {
		t.Fatal("Flush returned while a sighting was still pending")
	}
	answered := make(chan int, 1)
	go func() {
		code, _, _ := post(t, srv.Client(), srv.URL+"/webhooks/stripe", e.Body, signedStripe(e.Body))
		answered <- code
	}()
	d.gate <- struct{}{} // the first sighting commits
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-answered:
		t.Fatalf("after Flush the answer (%d) must wait for the sighting", code)
	case <-time.After(100 * time.Millisecond):
	}
	d.gate <- struct{}{}
	if code := <-answered; code != 200 {
		t.Fatalf("status %d", code)
	}
}

func TestAnEventRepeatedWithinADeliveryIsFlagged(t *testing.T) {
	t.Parallel()
	w := &fakeWriter{}
	srv, _ := unitServer(t, unitConfig(t, nil), w, &memDedup{})
	ev := `{"id":"e-1","type":"subscriber.created","created":"2026-03-02T10:15:00Z","data":{"subscriber":{"id":1}}}`
	other := `{"id":"e-2","type":"subscriber.created","created":"2026-03-02T10:15:00Z","data":{"subscriber":{"id":2}}}`
	body := []byte(`{"delivery_id":9,"events":[` + ev + `,` + other + `,` + ev + `]}`)
	code, _, a := post(t, srv.Client(), srv.URL+"/webhooks/kit", body, signedKit(body))
	if code != 200 || !strings.Contains(string(a), `"duplicates":1`) {
		t.Fatalf("%d %s", code, a)
	}
	recs := w.records(t)
	if len(recs) != 3 || recs[0].Duplicate || recs[1].Duplicate || !recs[2].Duplicate || recs[2].FirstSeenAt == nil {
		t.Fatalf("records: %+v", recs)
	}
}

func TestStateDatabaseDownStillStoresEvents(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	w := &fakeWriter{}
	srv, r := unitServer(t, unitConfig(t, nil), w, NewDedup(pool, time.Hour, discardLog()))
	e := stripe.InvoicePaid(stripe.Params{})
	start := time.Now()
	code, _, a := post(t, srv.Client(), srv.URL+"/webhooks/stripe", e.Body, signedStripe(e.Body))
	if code != http.StatusOK {
		t.Fatalf("status %d (%s): the event is in Kafka, the answer must be 2xx", code, a)
	}
	if d := time.Since(start); d > lookupTimeout+time.Second {
		t.Fatalf("answer took %s", d)
	}
	if recs := w.records(t); len(recs) != 1 || recs[0].Duplicate {
		t.Fatalf("records: %+v", recs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}
