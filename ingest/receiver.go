package ingest

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/schemas"
)

// Receiver is the webhook door: POST /webhooks/stripe, /webhooks/kit and
// /webhooks/circle. It answers 2xx only once Kafka (acks=all) holds every
// record of the request, 503 with Retry-After when Kafka does not take them
// (the provider retries, nothing is lost), and a small 4xx for anything it
// will not store. It never echoes a body, header or secret.
type Receiver struct {
	cfg   *config.Config
	log   *slog.Logger
	store *store
	dedup *Dedup // nil when built over a fake store

	stripe     *hmacVerifier
	kit        *hmacVerifier
	circle     *secretVerifier
	maxBody    int64
	legacyKit  bool
	retryAfter time.Duration
	pruneEvery time.Duration
	now        func() time.Time
	rejections *sampler
	// refused counts refused deliveries into lr.ingest.rejections.
	refused      *rejectionLog
	refusedEvery time.Duration
}

// Option adjusts a Receiver.
type Option func(*Receiver)

// WithRetryAfter sets the Retry-After a 503 carries (default 5 s).
func WithRetryAfter(d time.Duration) Option { return func(r *Receiver) { r.retryAfter = d } }

// WithWriteTimeout bounds how long a request waits for Kafka before it is
// answered 503 (default 5 s, well inside the providers' own timeouts).
func WithWriteTimeout(d time.Duration) Option {
	return func(r *Receiver) { r.store.writeTimeout = d }
}

// WithDedup makes the receiver use d (shared with a poller or a backfill in
// the same process) instead of a window of its own.
func WithDedup(d *Dedup) Option {
	return func(r *Receiver) { r.dedup, r.store.d = d, d }
}

// New builds the receiver, registers its routes on env.Mux and its readiness
// checks (Kafka answers; the state database answers) on env.Health. The dedup
// window lives in statePool's lr_seen_events. Run prunes it.
func New(env *app.Env, producer *kafka.Producer, statePool *pgxpool.Pool, opts ...Option) (*Receiver, error) {
	if env == nil || env.Cfg == nil || env.Mux == nil || env.Health == nil {
		return nil, errors.New("ingest: env needs Cfg, Mux and Health")
	}
	if producer == nil || statePool == nil {
		return nil, errors.New("ingest: a producer and a state database pool are required")
	}
	log := env.Log
	if log == nil {
		log = slog.Default()
	}
	log = obs.Component(log, "ingest")
	d := NewDedup(statePool, env.Cfg.DedupWindow, log)
	r := newReceiver(env.Cfg, log, producer, d, opts...)
	r.Register(env.Mux)
	admin := kafka.NewClient(env.Cfg.KafkaBrokers)
	env.Health.Add("ingest.kafka", admin.Ping)
	env.Health.Add("ingest.state_db", r.dedup.Ping)
	for name, s := range map[string]config.Secret{"LR_STRIPE_WEBHOOK_SECRET": env.Cfg.StripeWebhookSecret, "LR_KIT_WEBHOOK_SECRET": env.Cfg.KitWebhookSecret, "LR_CIRCLE_PUSH_SECRET": env.Cfg.CirclePushSecret} {
		if !s.Set() {
			log.Warn("webhook secret not set: that endpoint answers 503 until it is", "setting", name)
		}
	}
	return r, nil
}

func newReceiver(cfg *config.Config, log *slog.Logger, w writer, d dedupStore, opts ...Option) *Receiver {
	r := &Receiver{
		cfg:          cfg,
		log:          log,
		store:        newStore(w, d, cfg.Topic, log, 5*time.Second),
		stripe:       newHMACVerifier(splitSecrets(cfg.StripeWebhookSecret.Reveal()), cfg.WebhookTolerance),
		kit:          newHMACVerifier(splitSecrets(cfg.KitWebhookSecret.Reveal()), cfg.WebhookTolerance),
		circle:       newSecretVerifier(splitSecrets(cfg.CirclePushSecret.Reveal())),
		maxBody:      cfg.WebhookMaxBody,
		legacyKit:    cfg.KitLegacyWebhooks,
		retryAfter:   5 * time.Second,
		pruneEvery:   10 * time.Minute,
		now:          time.Now,
		rejections:   &sampler{every: time.Second, last: map[string]time.Time{}, dropped: map[string]int{}},
		refused:      newRejectionLog(w, cfg.Topic("ingest.rejections"), log),
		refusedEvery: time.Second,
	}
	if dd, ok := d.(*Dedup); ok {
		r.dedup = dd
	}
	r.store.async = true
	for _, o := range opts {
		o(r)
	}
	return r
}

// Register adds the webhook routes to mux (New has already added them to
// env.Mux).
func (r *Receiver) Register(mux *http.ServeMux) {
	mux.Handle("/webhooks/stripe", r.endpoint(schemas.ProviderStripe, schemas.SourceWebhook, r.verifyStripe))
	mux.Handle("/webhooks/kit", r.endpoint(schemas.ProviderKit, schemas.SourceWebhook, r.verifyKit))
	mux.Handle("/webhooks/circle", r.endpoint(schemas.ProviderCircle, schemas.SourcePush, r.verifyCircle))
}

// Name implements app.Stage.
func (r *Receiver) Name() string { return "ingest" }

// Dedup returns the receiver's dedup window, to share with a Poller or a
// Backfill in the same process.
func (r *Receiver) Dedup() *Dedup { return r.dedup }

// Run writes the counts of refused deliveries every second and prunes the
// dedup window every ten minutes until ctx ends, then flushes the sightings
// still being recorded (see Flush) and the last counts. The HTTP server that
// serves the routes is run by the caller (obs.Serve), whose shutdown lets
// in-flight requests finish their Kafka writes. Blocks.
func (r *Receiver) Run(ctx context.Context) error {
	refusedDone := make(chan struct{})
	go func() { defer close(refusedDone); r.refused.run(ctx, r.refusedEvery) }()
	defer func() { <-refusedDone }()
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return r.Flush(fctx)
		case <-t.C:
		}
		if r.dedup == nil {
			continue
		}
		n, err := r.dedup.Prune(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.WarnContext(ctx, "dedup prune failed", "err", err)
		case n > 0:
			r.log.InfoContext(ctx, "dedup window pruned", "deleted", n)
		}
		t.Reset(r.pruneEvery)
	}
}

// Flush makes the receiver record each request's dedup sightings before
// answering from now on, and waits until those recorded after their answer
// are committed, or ctx ends. Run calls it when its context ends, so the
// requests the HTTP server still drains after that are recorded in full
// before their answer. Idempotent.
func (r *Receiver) Flush(ctx context.Context) error {
	if err := r.store.flush(ctx); err != nil {
		return fmt.Errorf("ingest: dedup sightings not flushed: %w", err)
	}
	return nil
}

// verifyParse authenticates a body and splits it into events; it returns the
// verification result stored on each record.
type verifyParse func(req *http.Request, body []byte, now time.Time) ([]schemas.RawEvent, string, error)

func (r *Receiver) verifyStripe(req *http.Request, body []byte, now time.Time) ([]schemas.RawEvent, string, error) {
	if err := r.stripe.Verify(req.Header.Get("Stripe-Signature"), body, now); err != nil {
		return nil, "", err
	}
	ev, err := parseStripeEvent(body)
	if err != nil {
		return nil, "", err
	}
	return []schemas.RawEvent{ev}, schemas.VerifiedSignature, nil
}

// verifyKit accepts a signed delivery, or — only with LR_KIT_LEGACY_WEBHOOKS —
// an unsigned legacy body, stored as unverified.
func (r *Receiver) verifyKit(req *http.Request, body []byte, now time.Time) ([]schemas.RawEvent, string, error) {
	sig := req.Header.Get("X-Kit-Signature")
	if sig == "" && r.legacyKit && !isKitDelivery(body) {
		ev, err := parseKitLegacy(body, req.URL.Query().Get("event"), now.UTC())
		if err != nil {
			return nil, "", err
		}
		return []schemas.RawEvent{ev}, schemas.VerifiedNone, nil
	}
	if err := r.kit.Verify(sig, body, now); err != nil {
		return nil, "", err
	}
	evs, err := parseKitDelivery(body)
	if err != nil {
		return nil, "", err
	}
	return evs, schemas.VerifiedSignature, nil
}

func (r *Receiver) verifyCircle(req *http.Request, body []byte, now time.Time) ([]schemas.RawEvent, string, error) {
	if err := r.circle.Verify(req.Header.Get("X-Circle-Push-Secret")); err != nil {
		return nil, "", err
	}
	ev, err := parseCirclePush(body, now.UTC())
	if err != nil {
		return nil, "", err
	}
	return []schemas.RawEvent{ev}, schemas.VerifiedSharedSecret, nil
}

// rejection maps a verification or parse failure to a status and reason.
func rejection(err error) (int, string) {
	switch {
	case errors.Is(err, errNoSecret):
		// Misconfiguration: refuse with 503 so the provider keeps retrying
		// until the secret is set, instead of dropping the event.
		return http.StatusServiceUnavailable, "not_configured"
	case errors.Is(err, errNoSignature):
		return http.StatusUnauthorized, "missing_signature"
	case errors.Is(err, errBadSigHeader):
		return http.StatusUnauthorized, "bad_signature_header"
	case errors.Is(err, errStale):
		return http.StatusUnauthorized, "stale_timestamp"
	case errors.Is(err, errSigMismatch):
		return http.StatusUnauthorized, "signature_mismatch"
	case errors.Is(err, errSecretMismatch):
		return http.StatusUnauthorized, "secret_mismatch"
	case errors.Is(err, errMissingID):
		return http.StatusBadRequest, "missing_id"
	case errors.Is(err, errMissingType):
		return http.StatusBadRequest, "missing_type"
	case errors.Is(err, errMissingTime):
		return http.StatusBadRequest, "missing_time"
	case errors.Is(err, errNoEvents):
		return http.StatusBadRequest, "no_events"
	case errors.Is(err, errTooManyEvent):
		return http.StatusBadRequest, "too_many_events"
	default:
		return http.StatusBadRequest, "bad_json"
	}
}

func (r *Receiver) endpoint(provider, source string, vp verifyParse) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		id := newRequestID()
		w.Header().Set("X-Request-Id", id)
		code := r.serve(w, req, provider, source, id, vp)
		mRequest.WithLabelValues(provider, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
	})
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request, provider, source, id string, vp verifyParse) int {
	mReceived.WithLabelValues(provider).Inc()
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return r.reject(w, req, provider, id, http.StatusMethodNotAllowed, "method", "method not allowed")
	}
	if !isJSONContentType(req.Header.Get("Content-Type")) {
		return r.reject(w, req, provider, id, http.StatusUnsupportedMediaType, "content_type", "content type must be application/json")
	}
	if req.ContentLength > r.maxBody {
		return r.reject(w, req, provider, id, http.StatusRequestEntityTooLarge, "too_large", "body too large")
	}
	body, err := readBody(w, req, r.maxBody)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return r.reject(w, req, provider, id, http.StatusRequestEntityTooLarge, "too_large", "body too large")
		}
		return r.reject(w, req, provider, id, http.StatusBadRequest, "read_error", "body could not be read")
	}
	now := r.now()
	evs, verification, err := vp(req, body, now)
	if err != nil {
		code, reason := rejection(err)
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(int(r.retryAfter.Seconds())))
		}
		return r.reject(w, req, provider, id, code, reason, err.Error())
	}
	mVerified.WithLabelValues(provider, verification).Inc()
	received := now.UTC()
	for i := range evs {
		evs[i].ReceivedAt, evs[i].Source, evs[i].Verification, evs[i].RequestID = received, source, verification, id
	}
	dups, err := r.store.put(req.Context(), evs)
	if err != nil {
		mUnavailable.WithLabelValues(provider).Inc()
		r.refused.note(provider, "unavailable", http.StatusServiceUnavailable, id, now)
		if ok, dropped := r.rejections.allow(provider+"/unavailable", now); ok {
			r.log.WarnContext(req.Context(), "kafka did not acknowledge; answering 503", "provider", provider, "request_id", id, "events", len(evs), "err", err, "suppressed", dropped)
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(r.retryAfter.Seconds())))
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "temporarily unavailable, retry later", "request_id": id})
		return http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(fmt.Appendf(nil, `{"received":%d,"duplicates":%d,"request_id":%q}`+"\n", len(evs), dups, id))
	return http.StatusOK
}

// reject answers a small JSON error, counts the refusal for the audit trail
// and logs the reason (sampled: at most one line per provider and reason a
// second, with the count of the rest). None of them carries the body or any
// header.
func (r *Receiver) reject(w http.ResponseWriter, req *http.Request, provider, id string, code int, reason, msg string) int {
	mRejected.WithLabelValues(provider, reason).Inc()
	r.refused.note(provider, reason, code, id, r.now())
	if ok, dropped := r.rejections.allow(provider+"/"+reason, r.now()); ok {
		level := slog.LevelInfo
		if code == http.StatusUnauthorized || code == http.StatusServiceUnavailable {
			level = slog.LevelWarn
		}
		host, _, _ := net.SplitHostPort(req.RemoteAddr)
		r.log.Log(req.Context(), level, "webhook rejected", "provider", provider, "reason", reason, "status", code, "request_id", id, "remote", host, "suppressed", dropped)
	}
	writeJSON(w, code, map[string]any{"error": msg, "request_id": id})
	return code
}

// isJSONContentType accepts application/json with any parameters
// (Stripe sends "application/json; charset=utf-8").
func isJSONContentType(v string) bool {
	mt, _, _ := strings.Cut(v, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// readBody reads at most max bytes, allocating once when the length is
// announced. Beyond max it fails with *http.MaxBytesError.
func readBody(w http.ResponseWriter, req *http.Request, max int64) ([]byte, error) {
	rd := http.MaxBytesReader(w, req.Body, max)
	if n := req.ContentLength; n > 0 && n <= max {
		buf := make([]byte, n)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		// A body longer than announced is cut off by the server; nothing
		// more to read.
		return buf, nil
	}
	return io.ReadAll(rd)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func newRequestID() string {
	var b [8]byte
	n := rand.Uint64()
	for i := range b {
		b[i] = byte(n >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}

// sampler lets one log line per key through per interval and counts the rest.
type sampler struct {
	every   time.Duration
	mu      sync.Mutex
	last    map[string]time.Time
	dropped map[string]int
}

func (s *sampler) allow(key string, now time.Time) (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.last[key]) < s.every {
		s.dropped[key]++
		return false, 0
	}
	n := s.dropped[key]
	s.last[key], s.dropped[key] = now, 0
	return true, n
}
