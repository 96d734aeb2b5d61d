package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
	"github.com/launchready/launchready/simulate/stripe"
)

const (
	stripeSecret = "whsec_testsecret0123456789"
	kitSecret    = "kit_testsecret0123456789"
	circleSecret = "circle-push-secret-0123456789"
)

// unitConfig is the default configuration with test secrets, no services.
func unitConfig(t testing.TB, env map[string]string) *config.Config {
	t.Helper()
	all := map[string]string{
		"LR_STRIPE_WEBHOOK_SECRET": stripeSecret,
		"LR_KIT_WEBHOOK_SECRET":    kitSecret,
		"LR_CIRCLE_PUSH_SECRET":    circleSecret,
	}
	for k, v := range env {
		all[k] = v
	}
	cfg, err := config.LoadFrom(func(k string) (string, bool) { v, ok := all[k]; return v, ok }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// withSecrets sets the test secrets on a stack config.
func withSecrets(cfg *config.Config) *config.Config {
	cfg.StripeWebhookSecret = stripeSecret
	cfg.KitWebhookSecret = kitSecret
	cfg.CirclePushSecret = circleSecret
	return cfg
}

// fakeWriter is a Kafka stand-in for unit tests: it records what it was
// given and fails when fail says so.
type fakeWriter struct {
	mu   sync.Mutex
	msgs []kafka.Message
	fail func(msgs []kafka.Message) error
}

func (f *fakeWriter) Write(ctx context.Context, msgs ...kafka.Message) error {
	if f.fail != nil {
		if err := f.fail(msgs); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, msgs...)
	return nil
}

func (f *fakeWriter) records(t testing.TB) []schemas.RawEvent {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]schemas.RawEvent, len(f.msgs))
	for i, m := range f.msgs {
		if err := json.Unmarshal(m.Value, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// memDedup is an in-memory dedup window for unit tests.
type memDedup struct {
	claims
	mu   sync.Mutex
	seen map[string]time.Time
}

func (m *memDedup) Lookup(_ context.Context, keys []string) (map[string]time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]time.Time{}
	for _, k := range keys {
		if at, ok := m.seen[k]; ok {
			out[k] = at
		}
	}
	return out, nil
}

func (m *memDedup) Record(_ context.Context, seen []Seen) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen == nil {
		m.seen = map[string]time.Time{}
	}
	for _, s := range seen {
		if _, ok := m.seen[s.Key]; !ok {
			m.seen[s.Key] = s.At
		}
	}
	return nil
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// post sends body to url with headers and returns the status, headers and body.
func post(t testing.TB, client *http.Client, url string, body []byte, headers map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// signedStripe returns headers carrying a valid signature of body now.
func signedStripe(body []byte) map[string]string {
	return map[string]string{"Stripe-Signature": stripe.Sign(stripeSecret, body, time.Now())}
}

func signedKit(body []byte) map[string]string {
	return map[string]string{"X-Kit-Signature": stripe.Sign(kitSecret, body, time.Now())}
}

// unitServer serves a receiver over fakes.
func unitServer(t testing.TB, cfg *config.Config, w writer, d dedupStore, opts ...Option) (*httptest.Server, *Receiver) {
	t.Helper()
	r := newReceiver(cfg, discardLog(), w, d, opts...)
	mux := http.NewServeMux()
	r.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, r
}
