package httpx

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLimiterNeverExceedsWindow(t *testing.T) {
	t.Parallel()
	const n, window = 5, 200 * time.Millisecond
	l := NewLimiter(n, window)
	var mu sync.Mutex
	var starts []time.Time
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Wait(context.Background()); err != nil {
				t.Error(err)
			}
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, s := range starts {
		in := 0
		for _, o := range starts {
			if !o.Before(s) && o.Sub(s) < window-10*time.Millisecond {
				in++
			}
		}
		if in > n {
			t.Fatalf("%d requests started within one %v window, limit %d", in, window, n)
		}
	}
}

func TestLimiterHonoursContext(t *testing.T) {
	t.Parallel()
	l := NewLimiter(1, time.Hour)
	if _, err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline", err)
	}
}

func TestBudgetRefusesPastQuotaAndResetsMonthly(t *testing.T) {
	t.Parallel()
	var used []int
	b := NewBudget(5, nil, func(u, q int) { used = append(used, u) })
	now := time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)
	b.now = func() time.Time { return now }
	for i := 0; i < 5; i++ {
		if err := b.Take(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Take(); !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("6th request: err = %v", err)
	}
	if !b.warned {
		t.Fatal("no 80% warning")
	}
	now = now.Add(2 * time.Hour) // December
	if err := b.Take(); err != nil || b.Used() != 1 {
		t.Fatalf("new month: err %v used %d", err, b.Used())
	}
	if len(used) != 6 {
		t.Fatalf("metric callback called %d times, want 6", len(used))
	}
}

func TestClientRetriesThenSucceeds(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Kit-Api-Key") != "k-123456" {
			w.WriteHeader(401)
			return
		}
		switch calls.Add(1) {
		case 1:
			w.WriteHeader(503)
		case 2:
			w.WriteHeader(429) // Kit: no Retry-After
			w.Write([]byte("Retry later"))
		case 3:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(429)
		default:
			w.Write([]byte(`{"ok":true}`))
		}
	}))
	defer srv.Close()
	c := New(Options{Provider: "kit", BaseURL: srv.URL, RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond,
		Auth: func(h http.Header) { h.Set("X-Kit-Api-Key", "k-123456") }})
	var out struct{ OK bool }
	resp, err := c.Do(context.Background(), "GET", "/v4/x", nil, &out)
	if err != nil || !out.OK {
		t.Fatalf("err %v out %v", err, out)
	}
	if resp.Attempts != 4 {
		t.Fatalf("attempts = %d, want 4", resp.Attempts)
	}
}

func TestClientPermanentErrorIsNotRetried(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(422)
		w.Write([]byte(`{"errors":["Email address is invalid"]}`))
	}))
	defer srv.Close()
	c := New(Options{Provider: "kit", BaseURL: srv.URL, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	_, err := c.Do(context.Background(), "POST", "/v4/subscribers", map[string]string{"email_address": "x"}, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 422 || !IsPermanent(err) {
		t.Fatalf("err = %v", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("a 422 was tried %d times", calls.Load())
	}
}

func TestClientStopsAtBudget(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1); w.WriteHeader(500) }))
	defer srv.Close()
	c := New(Options{Provider: "circle", BaseURL: srv.URL, Budget: NewBudget(3, nil, nil), RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond})
	_, err := c.Do(context.Background(), "GET", "/x", nil, nil)
	if !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("err = %v, want budget exhausted", err)
	}
	if calls.Load() != 3 {
		t.Fatalf("%d calls reached the server, budget was 3", calls.Load())
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{"7": 7 * time.Second, "Thu, 01 Jan 2026 00:00:30 GMT": 30 * time.Second} {
		if got, ok := RetryAfter(in, now); !ok || got != want {
			t.Errorf("RetryAfter(%q) = %v %v", in, got, ok)
		}
	}
	if _, ok := RetryAfter("soon", now); ok {
		t.Error("accepted garbage")
	}
}
