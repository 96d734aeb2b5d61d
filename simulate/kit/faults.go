package kitsim

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Faults are the failures the simulator injects. Fractions are in [0, 1] and
// drawn per request. Injected answers are not rate-limit violations: they are
// the provider misbehaving, not the client.
type Faults struct {
	// Throttle answers this fraction of requests with Kit's 429 ("Retry
	// later", no Retry-After), as if another app shared the API key.
	Throttle float64 `json:"throttle"`
	// Errors answers this fraction with 500, 502 or 503 before any effect.
	Errors float64 `json:"errors"`
	// Drop closes this fraction of connections without an answer.
	Drop float64 `json:"drop"`
	// DropAfterApply applies a dropped write before closing the connection:
	// the answer is lost, not the request (what a timeout looks like to a client).
	DropAfterApply bool `json:"drop_after_apply"`
	// Slow delays this fraction of requests by Delay.
	Slow  float64       `json:"slow"`
	Delay time.Duration `json:"-"`
}

// MarshalJSON shows Delay as a duration ("500ms"), as the flags take it.
func (f Faults) MarshalJSON() ([]byte, error) {
	type plain Faults
	return json.Marshal(struct {
		plain
		Delay string `json:"delay"`
	}{plain(f), f.Delay.String()})
}

// Validate reports a fraction out of range or a negative delay.
func (f Faults) Validate() error {
	for name, v := range map[string]float64{"throttle": f.Throttle, "errors": f.Errors, "drop": f.Drop, "slow": f.Slow} {
		if v < 0 || v > 1 {
			return fmt.Errorf("faults: %s must be within [0, 1], got %v", name, v)
		}
	}
	if f.Delay < 0 {
		return fmt.Errorf("faults: delay must not be negative")
	}
	return nil
}

// fault is what happens to one request.
type fault int

const (
	faultNone fault = iota
	faultThrottle
	faultError
	faultDrop
)

// injector draws faults; a storm throttles every request until it ends.
type injector struct {
	mu         sync.Mutex
	f          Faults
	stormUntil time.Time
	rnd        *rand.Rand
}

func newInjector(f Faults, seed uint64) *injector {
	return &injector{f: f, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (in *injector) set(f Faults) {
	in.mu.Lock()
	in.f = f
	in.mu.Unlock()
}

func (in *injector) get() Faults {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.f
}

func (in *injector) storm(until time.Time) {
	in.mu.Lock()
	in.stormUntil = until
	in.mu.Unlock()
}

// draw decides the fault and delay of one request.
func (in *injector) draw(now time.Time) (fault, time.Duration, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	var delay time.Duration
	if in.f.Slow > 0 && in.rnd.Float64() < in.f.Slow {
		delay = in.f.Delay
	}
	switch {
	case now.Before(in.stormUntil):
		return faultThrottle, delay, false
	case in.f.Throttle > 0 && in.rnd.Float64() < in.f.Throttle:
		return faultThrottle, delay, false
	case in.f.Errors > 0 && in.rnd.Float64() < in.f.Errors:
		return faultError, delay, false
	case in.f.Drop > 0 && in.rnd.Float64() < in.f.Drop:
		return faultDrop, delay, in.f.DropAfterApply
	}
	return faultNone, delay, false
}

func (in *injector) errorStatus() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}[in.rnd.IntN(3)]
}

// window is the provider's own sliding-window rate limit per credential.
type window struct {
	n    int
	d    time.Duration
	hits map[string][]time.Time
}

// admit records a request arriving at now, or reports that the client is
// over the limit (the request is then not counted).
func (w *window) admit(key string, now time.Time) bool {
	if w.n <= 0 {
		return true
	}
	h := w.hits[key]
	cut := now.Add(-w.d)
	i := 0
	for i < len(h) && !h[i].After(cut) {
		i++
	}
	h = h[i:]
	if len(h) >= w.n {
		w.hits[key] = h
		return false
	}
	w.hits[key] = append(h, now)
	return true
}

// Stats are the simulator's counters, for tests and the demo.
type Stats struct {
	// Requests by route, e.g. "POST /v4/tags/{tag_id}/subscribers/{id}".
	Requests map[string]int `json:"requests"`
	// Writes counts authenticated write requests (any method but GET),
	// whatever their outcome.
	Writes int `json:"writes"`
	// Throttled counts 429 answers: Violations plus injected ones.
	Throttled int `json:"throttled"`
	// Violations counts requests that arrived while the key was over its limit.
	Violations    int `json:"violations"`
	Injected      int `json:"injected"`
	Unauthorized  int `json:"unauthorized"`
	DuplicateTags int `json:"duplicate_tags"`
	Created       int `json:"subscribers_created"`
	// Webhook deliveries: attempts, successes, and deliveries given up.
	WebhookAttempts  int `json:"webhook_attempts"`
	WebhooksSent     int `json:"webhooks_delivered"`
	WebhooksDropped  int `json:"webhooks_abandoned"`
	WebhookEvents    int `json:"webhook_events"`
	WebhookQueueFull int `json:"webhook_queue_full"`
}

func (s Stats) clone() Stats {
	out := s
	out.Requests = make(map[string]int, len(s.Requests))
	for k, v := range s.Requests {
		out.Requests[k] = v
	}
	return out
}

// TotalRequests sums Requests.
func (s Stats) TotalRequests() int {
	n := 0
	for _, v := range s.Requests {
		n += v
	}
	return n
}

// adminRoutes serves /_sim/: GET stats, GET|POST faults (query parameters
// throttle, errors, drop, drop_after_apply, slow, delay, storm), POST reset.
func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_sim/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.inj.get())
	})
	mux.HandleFunc("POST /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		f, storm, err := parseFaults(s.inj.get(), r)
		if err == nil {
			err = f.Validate()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.SetFaults(f)
		if storm > 0 {
			s.Storm(storm)
		}
		writeJSON(w, http.StatusOK, f)
	})
	mux.HandleFunc("POST /_sim/reset", func(w http.ResponseWriter, r *http.Request) {
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	})
}

// parseFaults applies the query parameters of r to f.
func parseFaults(f Faults, r *http.Request) (Faults, time.Duration, error) {
	q := r.URL.Query()
	var storm time.Duration
	for key, dst := range map[string]*float64{"throttle": &f.Throttle, "errors": &f.Errors, "drop": &f.Drop, "slow": &f.Slow} {
		if v := q.Get(key); v != "" {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return f, 0, fmt.Errorf("%s: %w", key, err)
			}
			*dst = x
		}
	}
	if v := q.Get("drop_after_apply"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return f, 0, fmt.Errorf("drop_after_apply: %w", err)
		}
		f.DropAfterApply = b
	}
	for key, dst := range map[string]*time.Duration{"delay": &f.Delay, "storm": &storm} {
		if v := q.Get(key); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return f, 0, fmt.Errorf("%s: %w", key, err)
			}
			*dst = d
		}
	}
	return f, storm, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
