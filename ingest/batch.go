package ingest

import (
	"context"
	"sync"
	"time"
)

// group is a group commit: concurrent callers' items are gathered into one
// call of fn. There is no timer: a batch runs as soon as a runner is free,
// and whatever arrives while runners are busy forms the next batch — one
// item per statement when the load is light, large batches under load.
// At most runners batches are in flight; a batch holds at most max items
// (one caller's items are never split).
type group[T, R any] struct {
	fn      func(ctx context.Context, items []T) (R, error)
	max     int
	runners int
	timeout time.Duration

	mu     sync.Mutex
	queue  []*groupCall[T, R]
	active int
}

type groupCall[T, R any] struct {
	items []T
	res   R
	err   error
	done  chan struct{}
}

func newGroup[T, R any](fn func(context.Context, []T) (R, error), max, runners int, timeout time.Duration) *group[T, R] {
	return &group[T, R]{fn: fn, max: max, runners: runners, timeout: timeout}
}

// do runs fn over items as part of a shared batch and returns the batch's
// result. It blocks until the batch ran or ctx ends; in the latter case the
// items may still be processed.
func (g *group[T, R]) do(ctx context.Context, items []T) (R, error) {
	c := &groupCall[T, R]{items: items, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	if g.active < g.runners {
		g.active++
		go g.run()
	}
	g.mu.Unlock()
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		var zero R
		return zero, ctx.Err()
	}
}

// run executes batches until the queue is empty. A batch runs under its own
// deadline: it serves many callers, so no single caller's context owns it.
func (g *group[T, R]) run() {
	for {
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.active--
			g.mu.Unlock()
			return
		}
		n, count := 0, 0
		for n < len(g.queue) && (n == 0 || count+len(g.queue[n].items) <= g.max) {
			count += len(g.queue[n].items)
			n++
		}
		batch := make([]*groupCall[T, R], n)
		copy(batch, g.queue)
		g.queue = append(g.queue[:0], g.queue[n:]...)
		g.mu.Unlock()

		items := make([]T, 0, count)
		for _, c := range batch {
			items = append(items, c.items...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
		res, err := g.fn(ctx, items)
		cancel()
		for _, c := range batch {
			c.res, c.err = res, err
			close(c.done)
		}
	}
}
