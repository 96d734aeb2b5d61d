package cdc

import (
	"fmt"
	"sync"
)

// tracker knows which WAL position may be confirmed to Postgres: the stream
// is cut into rounds, in stream order; a round is done when Kafka
// acknowledged every record in it; the confirmable position is the highest
// checkpoint among the leading run of done rounds. A position is thus never
// confirmed while an earlier record is unacknowledged, whatever order the
// writers finish in.
type tracker struct {
	mu     sync.Mutex
	head   uint64 // id of rounds[0]
	rounds []trackedRound
	acked  LSN
	// onAdvance, when set, is called (outside the lock) with the new position.
	onAdvance func(LSN)
}

type trackedRound struct {
	pending    int
	checkpoint LSN // 0: the round holds no confirmable position
	onDone     []func()
}

// open registers the next round: pending sub-batches must be marked done
// before it counts as acknowledged. checkpoint is the highest position the
// round makes confirmable (0 for none); a checkpoint below the current one is
// a bug upstream and is refused. onDone functions run once the round and all
// before it are acknowledged. It returns the round's id.
func (t *tracker) open(pending int, checkpoint LSN, onDone []func()) (uint64, error) {
	t.mu.Lock()
	last := t.acked
	for _, r := range t.rounds {
		last = max(last, r.checkpoint)
	}
	if checkpoint != 0 && checkpoint < last {
		t.mu.Unlock()
		return 0, fmt.Errorf("checkpoint %s is behind %s: positions must only move forward", checkpoint, last)
	}
	id := t.head + uint64(len(t.rounds))
	t.rounds = append(t.rounds, trackedRound{pending: pending, checkpoint: checkpoint, onDone: onDone})
	advanced, fns := t.settle()
	t.mu.Unlock()
	t.after(advanced, fns)
	return id, nil
}

// done marks one sub-batch of round id acknowledged. Acknowledging a round
// more often than it has sub-batches is a bug upstream and is refused.
func (t *tracker) done(id uint64) error {
	t.mu.Lock()
	i := int(id - t.head)
	if id < t.head || i >= len(t.rounds) || t.rounds[i].pending == 0 {
		t.mu.Unlock()
		return fmt.Errorf("round %d acknowledged more often than it was written", id)
	}
	t.rounds[i].pending--
	advanced, fns := t.settle()
	t.mu.Unlock()
	t.after(advanced, fns)
	return nil
}

// settle pops the leading done rounds; called with mu held.
func (t *tracker) settle() (advanced bool, fns []func()) {
	n := 0
	for n < len(t.rounds) && t.rounds[n].pending == 0 {
		r := t.rounds[n]
		if r.checkpoint > t.acked {
			t.acked = r.checkpoint
			advanced = true
		}
		fns = append(fns, r.onDone...)
		n++
	}
	if n > 0 {
		clear(t.rounds[:n])
		t.rounds = t.rounds[n:]
		t.head += uint64(n)
	}
	return advanced, fns
}

func (t *tracker) after(advanced bool, fns []func()) {
	if advanced && t.onAdvance != nil {
		t.onAdvance(t.confirmed())
	}
	for _, f := range fns {
		f()
	}
}

// confirmed is the highest position whose every record is acknowledged.
func (t *tracker) confirmed() LSN {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.acked
}

// start sets the position already confirmed when the stream begins.
func (t *tracker) start(l LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.acked = max(t.acked, l)
}

// outstanding is the number of rounds not yet settled.
func (t *tracker) outstanding() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.rounds)
}
