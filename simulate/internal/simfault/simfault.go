// Package simfault is what the provider simulators share: the faults they
// inject on demand, the provider's own sliding-window rate limit, and the
// parsing of the /_sim/faults admin endpoint.
package simfault

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Faults are the failures a simulator injects. Fractions are in [0, 1] and
// drawn per request. Injected answers are not rate-limit violations: they are
// the provider misbehaving, not the client.
type Faults struct {
	// Throttle answers this fraction of requests with the provider's 429, as
	// if another client shared the credential or address.
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

// Fault is what happens to one request.
type Fault int

const (
	None Fault = iota
	Throttle
	Error
	Drop
)

// Injector draws faults; a storm throttles every request until it ends.
// Safe for concurrent use.
type Injector struct {
	mu         sync.Mutex
	f          Faults
	stormUntil time.Time
	rnd        *rand.Rand
}

// NewInjector returns an injector of f whose draws follow seed.
func NewInjector(f Faults, seed uint64) *Injector {
	return &Injector{f: f, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Set replaces the faults.
func (in *Injector) Set(f Faults) {
	in.mu.Lock()
	in.f = f
	in.mu.Unlock()
}

// Get returns the faults.
func (in *Injector) Get() Faults {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.f
}

// Storm throttles every request until the given time.
func (in *Injector) Storm(until time.Time) {
	in.mu.Lock()
	in.stormUntil = until
	in.mu.Unlock()
}

// Draw decides the fault and delay of one request, and whether a dropped
// write is applied before the connection closes.
func (in *Injector) Draw(now time.Time) (Fault, time.Duration, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	var delay time.Duration
	if in.f.Slow > 0 && in.rnd.Float64() < in.f.Slow {
		delay = in.f.Delay
	}
	switch {
	case now.Before(in.stormUntil):
		return Throttle, delay, false
	case in.f.Throttle > 0 && in.rnd.Float64() < in.f.Throttle:
		return Throttle, delay, false
	case in.f.Errors > 0 && in.rnd.Float64() < in.f.Errors:
		return Error, delay, false
	case in.f.Drop > 0 && in.rnd.Float64() < in.f.Drop:
		return Drop, delay, in.f.DropAfterApply
	}
	return None, delay, false
}

// ErrorStatus draws the status of an injected server error.
func (in *Injector) ErrorStatus() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}[in.rnd.IntN(3)]
}

// Window is the provider's own sliding-window rate limit per credential or
// client address. Not safe for concurrent use: the simulator's lock guards it.
type Window struct {
	n    int
	d    time.Duration
	hits map[string][]time.Time
}

// NewWindow allows n requests per d per key; n <= 0 means no limit.
func NewWindow(n int, d time.Duration) Window {
	return Window{n: n, d: d, hits: map[string][]time.Time{}}
}

// Admit records a request arriving at now, or reports that the key is over
// the limit (the request is then not counted) and when it may retry.
func (w *Window) Admit(key string, now time.Time) (bool, time.Duration) {
	if w.n <= 0 {
		return true, 0
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
		return false, h[0].Add(w.d).Sub(now)
	}
	w.hits[key] = append(h, now)
	return true, 0
}

// ParseFaults applies the query parameters of r (throttle, errors, drop,
// drop_after_apply, slow, delay, storm) to f.
func ParseFaults(f Faults, r *http.Request) (Faults, time.Duration, error) {
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

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Admin is what a simulator's /_sim/ endpoints act on.
type Admin struct {
	Stats     func() any
	Faults    *Injector
	SetFaults func(Faults)
	Storm     func(time.Duration)
	Reset     func()
}

// AdminRoutes serves /_sim/: GET stats, GET|POST faults (query parameters
// throttle, errors, drop, drop_after_apply, slow, delay, storm), POST reset.
func AdminRoutes(mux *http.ServeMux, a Admin) {
	mux.HandleFunc("GET /_sim/stats", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, a.Stats())
	})
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, a.Faults.Get())
	})
	mux.HandleFunc("POST /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		f, storm, err := ParseFaults(a.Faults.Get(), r)
		if err == nil {
			err = f.Validate()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.SetFaults(f)
		if storm > 0 {
			a.Storm(storm)
		}
		WriteJSON(w, http.StatusOK, f)
	})
	mux.HandleFunc("POST /_sim/reset", func(w http.ResponseWriter, r *http.Request) {
		a.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
}
