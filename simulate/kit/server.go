// Package kitsim is an HTTP simulator of the part of Kit's API v4 that
// launchready uses: subscribers (look-up by email, upsert, custom fields,
// unsubscribe), tags and tagging, custom fields. It keeps state, checks the
// X-Kit-Api-Key header, enforces Kit's sliding 120 requests / 60 s per key
// with its real 429 (plain "Retry later", no Retry-After), counts what a test
// needs to assert on (requests by route, writes, rate-limit violations,
// duplicate tags), injects faults on demand (429 storms, 5xx, slow answers,
// dropped connections) and sends signed webhooks when subscriber state
// changes, as Kit does. State is inspectable through the same GET endpoints a
// client uses, and through the Go API below.
package kitsim

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/launchready/launchready/simulate/internal/simfault"
)

// Options configures a Server.
type Options struct {
	// APIKey is the only key accepted in X-Kit-Api-Key (default "kit-sim-key").
	APIKey string
	// FirstID is the id of the first subscriber created (default 1001).
	// Real subscriber ids are never reused: give each run of a simulator
	// against long-lived pipeline state a range of its own.
	FirstID int64
	// Limit requests per Window per key; defaults to Kit's 120 per 60 s.
	// A negative Limit disables the limit.
	Limit  int
	Window time.Duration
	// Tags and Fields exist from the start (Kit refuses unknown tag ids and
	// silently ignores unknown custom fields).
	Tags   []Tag
	Fields []string
	// WebhookURL, when set, receives signed deliveries of subscriber events
	// with WebhookSecret as the signing secret.
	WebhookURL    string
	WebhookSecret string
	// WebhookRetries are the waits between delivery attempts; default Kit's
	// 30 s, 2 m, 15 m, 1 h, 4 h, 12 h, 24 h.
	WebhookRetries []time.Duration
	// WebhookBatch is how long events of one type gather into one delivery
	// (at most 100 events); default 100 ms.
	WebhookBatch time.Duration
	Faults       Faults
	// Seed makes fault draws reproducible.
	Seed uint64
	Log  *slog.Logger
}

// Server is a running (or mountable) Kit simulator. Safe for concurrent use.
type Server struct {
	opt Options
	now func() time.Time
	inj *simfault.Injector
	mux *http.ServeMux
	log *slog.Logger

	mu        sync.Mutex
	subs      map[int64]*subscriber
	byEmail   map[string]int64
	tags      map[int64]*Tag
	fields    []field
	nextID    int64
	nextTag   int64
	nextFld   int64
	win       simfault.Window
	stats     Stats
	hooks     *webhooks
	closeOnce sync.Once
	ln        simfault.Listener
}

// New returns a simulator with the given options; Handler serves it, or
// Start listens on an address. Close stops webhook deliveries and the server.
func New(o Options) *Server {
	if o.APIKey == "" {
		o.APIKey = "kit-sim-key"
	}
	if o.Limit == 0 {
		o.Limit = 120
	}
	if o.Window == 0 {
		o.Window = 60 * time.Second
	}
	if o.WebhookRetries == nil {
		o.WebhookRetries = []time.Duration{30 * time.Second, 2 * time.Minute, 15 * time.Minute, time.Hour, 4 * time.Hour, 12 * time.Hour, 24 * time.Hour}
	}
	if o.WebhookBatch == 0 {
		o.WebhookBatch = 100 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &Server{
		opt: o, now: time.Now, inj: newInjector(o.Faults, o.Seed), mux: http.NewServeMux(),
		log:  o.Log.With("component", "kitsim"),
		subs: map[int64]*subscriber{}, byEmail: map[string]int64{}, tags: map[int64]*Tag{},
		nextID: firstID(o.FirstID, 1000), nextTag: 9000, nextFld: 100,
		win:   simfault.NewWindow(o.Limit, o.Window),
		stats: Stats{Requests: map[string]int{}},
	}
	for _, t := range o.Tags {
		s.addTag(t)
	}
	for _, f := range o.Fields {
		s.addField(f)
	}
	if o.WebhookURL != "" {
		s.hooks = newWebhooks(s)
	}
	s.routes()
	return s
}

// Handler serves the API under /v4/ and the admin endpoints under /_sim/.
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens on addr (e.g. "127.0.0.1:0") and serves in the background.
// It returns the base URL of the server (the API is under URL+"/v4").
func (s *Server) Start(addr string) (string, error) {
	return s.ln.Start(addr, s.mux, s.log, "kit simulator")
}

// URL is the base URL after Start ("" before).
func (s *Server) URL() string { return s.ln.URL() }

// APIKey is the key clients must send.
func (s *Server) APIKey() string { return s.opt.APIKey }

// Close stops the server (if started) and webhook deliveries. Idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.hooks != nil {
			s.hooks.close()
		}
	})
	return s.ln.Close()
}

// SetFaults replaces the injected faults.
func (s *Server) SetFaults(f Faults) { s.inj.Set(f) }

// Storm answers every request with 429 for d from now.
func (s *Server) Storm(d time.Duration) { s.inj.Storm(s.now().Add(d)) }

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.clone()
}

// ResetStats zeroes the counters (state and the rate-limit window are kept).
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{Requests: map[string]int{}}
}

func (s *Server) routes() {
	s.api("GET /v4/subscribers", s.listSubscribers)
	s.api("POST /v4/subscribers", s.upsertSubscriber)
	s.api("GET /v4/subscribers/{id}", s.getSubscriber)
	s.api("PATCH /v4/subscribers/{id}", s.updateSubscriber)
	s.api("PUT /v4/subscribers/{id}", s.updateSubscriber)
	s.api("POST /v4/subscribers/{id}/unsubscribe", s.unsubscribe)
	s.api("GET /v4/subscribers/{id}/tags", s.subscriberTags)
	s.api("GET /v4/tags", s.listTags)
	s.api("POST /v4/tags", s.createTag)
	s.api("POST /v4/tags/{tag_id}/subscribers/{id}", s.tagByID)
	s.api("DELETE /v4/tags/{tag_id}/subscribers/{id}", s.untagByID)
	s.api("POST /v4/tags/{tag_id}/subscribers", s.tagByEmail)
	s.api("DELETE /v4/tags/{tag_id}/subscribers", s.untagByEmail)
	s.api("GET /v4/custom_fields", s.listFields)
	s.api("POST /v4/custom_fields", s.createField)
	s.adminRoutes(s.mux)
}

// api registers an API route behind the gate every request passes: count,
// authenticate, rate-limit, inject faults.
func (s *Server) api(pattern string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		now := s.now()
		write := r.Method != http.MethodGet
		s.mu.Lock()
		s.stats.Requests[pattern]++
		key := r.Header.Get("X-Kit-Api-Key")
		if key != s.opt.APIKey {
			s.stats.Unauthorized++
			s.mu.Unlock()
			simfault.WriteJSON(w, http.StatusUnauthorized, errorsBody("The access token is invalid"))
			return
		}
		if write {
			s.stats.Writes++
		}
		if ok, _ := s.win.Admit(key, now); !ok {
			s.stats.Violations++
			s.stats.Throttled++
			s.mu.Unlock()
			retryLater(w)
			return
		}
		s.mu.Unlock()
		f, delay, applyFirst := s.inj.Draw(now)
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if f != faultNone {
			s.mu.Lock()
			s.stats.Injected++
			if f == faultThrottle {
				s.stats.Throttled++
			}
			s.mu.Unlock()
		}
		switch f {
		case faultThrottle:
			retryLater(w)
			return
		case faultError:
			simfault.WriteJSON(w, s.inj.ErrorStatus(), errorsBody("Internal server error"))
			return
		case faultDrop:
			if applyFirst && write {
				h(httptest.NewRecorder(), r)
			}
			dropConnection(w)
			return
		}
		h(w, r)
	})
}

// retryLater is Kit's answer to a key over its limit: plain text, no Retry-After.
func retryLater(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte("Retry later"))
}

// dropConnection closes the client's connection without an answer.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // net/http's documented way to abort a response
}

func errorsBody(msgs ...string) map[string][]string { return map[string][]string{"errors": msgs} }

func normEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

func firstID(first, def int64) int64 {
	if first > 0 {
		return first - 1
	}
	return def
}
