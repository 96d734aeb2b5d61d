package obs

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry is launchready's metric registry; every metric is named launchready_….
var Registry = func() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}()

// Check answers whether one dependency is usable; nil means ready. It must
// return within its context's deadline.
type Check func(ctx context.Context) error

// Health holds the named readiness checks of one process.
type Health struct {
	mu     sync.Mutex
	checks map[string]Check
}

// NewHealth returns an empty set of checks.
func NewHealth() *Health { return &Health{checks: map[string]Check{}} }

// Add registers (or replaces) a named check. Safe for concurrent use.
func (h *Health) Add(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = c
}

// Result runs every check in parallel under a 2 s deadline and reports each
// one's error text ("" when ready).
func (h *Health) Result(ctx context.Context) (ready bool, detail map[string]string) {
	h.mu.Lock()
	names := make([]string, 0, len(h.checks))
	for n := range h.checks {
		names = append(names, n)
	}
	checks := make([]Check, len(names))
	sort.Strings(names)
	for i, n := range names {
		checks[i] = h.checks[n]
	}
	h.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c(ctx) }()
	}
	wg.Wait()
	ready = true
	detail = make(map[string]string, len(names))
	for i, n := range names {
		detail[n] = "ok"
		if errs[i] != nil {
			ready = false
			detail[n] = errs[i].Error()
		}
	}
	return ready, detail
}

// Mux returns a ServeMux with /metrics, /healthz (the process is alive) and
// /readyz (every check passes; 503 with the reasons otherwise).
func (h *Health) Mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ready, detail := h.Result(r.Context())
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": ready, "checks": detail})
	})
	return mux
}

// Serve runs srv on addr until ctx ends, then shuts it down within grace.
// It returns once the listener is closed and in-flight requests finished.
func Serve(ctx context.Context, log *slog.Logger, addr string, handler http.Handler, grace time.Duration) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.InfoContext(ctx, "http listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
