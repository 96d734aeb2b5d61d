package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Limiter allows at most N requests in any sliding window of Window: it keeps
// the start times of the last N requests and lets a new one start only when
// the oldest of them is at least Window old. Unlike a token bucket it can
// never burst past the provider's own count, which is what a provider that
// counts a sliding window (Kit: 120 per 60 s) requires.
type Limiter struct {
	n      int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	ring  []time.Time // start times of the last n requests, oldest at next
	next  int
	count int
}

// NewLimiter returns a limiter of n requests per window. n <= 0 means no limit.
func NewLimiter(n int, window time.Duration) *Limiter {
	l := &Limiter{n: n, window: window, now: time.Now}
	if n > 0 {
		l.ring = make([]time.Time, n)
	}
	return l
}

// Wait blocks until a request may start and records its start. It returns
// ctx's error if ctx ends first (the slot is then not taken).
func (l *Limiter) Wait(ctx context.Context) (waited time.Duration, err error) {
	if l == nil || l.n <= 0 {
		return 0, nil
	}
	start := l.now()
	for {
		l.mu.Lock()
		now := l.now()
		var wait time.Duration
		if l.count < l.n {
			wait = 0
		} else if oldest := l.ring[l.next]; now.Sub(oldest) < l.window {
			wait = l.window - now.Sub(oldest)
		}
		if wait == 0 {
			l.ring[l.next] = now
			l.next = (l.next + 1) % l.n
			if l.count < l.n {
				l.count++
			}
			l.mu.Unlock()
			return now.Sub(start), nil
		}
		l.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return l.now().Sub(start), ctx.Err()
		case <-t.C:
		}
	}
}

// ErrBudgetExhausted means the monthly request quota is used up: the call was
// not made. Callers treat it as retryable next month, not as a provider error.
var ErrBudgetExhausted = errors.New("monthly API request budget exhausted")

// Budget counts requests per calendar month (UTC) against a quota, warns once
// when 80% is used, and refuses requests past the quota.
type Budget struct {
	quota int
	log   *slog.Logger
	now   func() time.Time
	onUse func(used, quota int)

	mu     sync.Mutex
	month  string
	used   int
	warned bool
}

// NewBudget returns a budget of quota requests a month; quota <= 0 is unlimited.
// onUse, if not nil, is called after each counted request (for metrics).
func NewBudget(quota int, log *slog.Logger, onUse func(used, quota int)) *Budget {
	if log == nil {
		log = slog.Default()
	}
	return &Budget{quota: quota, log: log, now: time.Now, onUse: onUse}
}

// Take counts one request, or returns ErrBudgetExhausted without counting.
func (b *Budget) Take() error {
	if b == nil || b.quota <= 0 {
		return nil
	}
	b.mu.Lock()
	m := b.now().UTC().Format("2006-01")
	if m != b.month {
		b.month, b.used, b.warned = m, 0, false
	}
	if b.used >= b.quota {
		b.mu.Unlock()
		return fmt.Errorf("%w (%d of %d used in %s)", ErrBudgetExhausted, b.used, b.quota, m)
	}
	b.used++
	used, warn := b.used, !b.warned && b.used*5 >= b.quota*4
	if warn {
		b.warned = true
	}
	b.mu.Unlock()
	if warn {
		b.log.Warn("monthly API budget 80% used", "used", used, "quota", b.quota, "month", m)
	}
	if b.onUse != nil {
		b.onUse(used, b.quota)
	}
	return nil
}

// Used returns the requests counted this month.
func (b *Budget) Used() int {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.now().UTC().Format("2006-01") != b.month {
		return 0
	}
	return b.used
}

// Restore sets this month's count, e.g. from a persisted value at start-up.
func (b *Budget) Restore(used int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.month, b.used = b.now().UTC().Format("2006-01"), used
	b.warned = b.quota > 0 && used*5 >= b.quota*4
}
