package simfault

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Listener serves a simulator's handler on a TCP address in the
// background: Start, URL and Close, shared by the simulators.
type Listener struct {
	mu       sync.Mutex
	srv      *http.Server
	baseURL  string
	closed   bool
	closeErr error
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves h in the background;
// it returns the base URL. name labels the log line if serving stops.
func (l *Listener) Start(addr string, h http.Handler, log *slog.Logger, name string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	l.mu.Lock()
	l.srv, l.baseURL = srv, "http://"+ln.Addr().String()
	base := l.baseURL
	l.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(name+" stopped", "err", err)
		}
	}()
	return base, nil
}

// URL is the base URL after Start ("" before).
func (l *Listener) URL() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.baseURL
}

// Close shuts the server down (if started), giving requests in flight two
// seconds. Idempotent: later calls return the first call's result.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.closeErr
	}
	l.closed = true
	if l.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := l.srv.Shutdown(ctx); err != nil {
			l.closeErr = l.srv.Close()
		}
	}
	return l.closeErr
}

// Sum adds up a simulator's per-route request counts.
func Sum(counts map[string]int) int {
	n := 0
	for _, v := range counts {
		n += v
	}
	return n
}
