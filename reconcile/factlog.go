package reconcile

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// The fact log and several instances.
//
// reconcile.seen (compacted, keyed by dedup key) holds every applied fact.
// It is both the remembered window of event ids and the reconciler's state:
// because State folds facts with joins only, replaying the log in any order —
// partition after partition — rebuilds exactly the customers the last run
// had. The log keeps every distinct event (one small record each); facts are
// never pruned, so a duplicate is recognised however late it comes.
//
// Every instance holds every customer. At start it replays the whole log,
// then tails it: facts applied by other instances (the partitions the
// consumer group gave them) are folded in as they appear. Identity links that
// cross partitions therefore need no coordination: a Stripe event on one
// instance and a Kit event on another both land in every instance's
// union-find.
//
// Each instance writes a customer's records whenever its own view of that
// customer changes — after a fact it applied or one it folded in from the
// log — and compares with what it last wrote itself (at start: what the
// topics held). All instances end with
// the same facts and so the same view, and each one's last write for a key is
// that view (a merged-away id included: the instance that wrote it live
// retires it when it applies the merge). So the compacted topics converge to
// a clean run's state whatever the interleaving. What remains: for about the
// tail delay (the fetch wait, 250 ms) a record may lack the other instance's
// newest fact, and a version may briefly go back (versions count the facts
// the writer had); with N instances every change is written up to N times —
// outputs are full states, so the copies are harmless, and decisions are
// written once, by the instance that applied the fact. Memory grows with the
// number of customers, not partitions: fine for a small business's tens of
// thousands of customers.

// rebuild loads what was last emitted and replays the fact log. It returns
// the log's end offsets measured before the replay: where tail starts.
func (r *Reconciler) rebuild(ctx context.Context) (map[int]int64, error) {
	start := time.Now()
	brokers := r.cfg.KafkaBrokers
	last := func(id string) *emitted {
		e := r.emitted[id]
		if e == nil {
			e = &emitted{}
			r.emitted[id] = e
		}
		return e
	}
	err := kafka.ReadToEnd(ctx, brokers, r.t.identity, func(m kafka.Message) error {
		var rec schemas.Identity
		if len(m.Value) == 0 || json.Unmarshal(m.Value, &rec) != nil || rec.CustomerID == "" {
			return nil
		}
		last(rec.CustomerID).identity = &rec
		return nil
	})
	if err == nil {
		err = kafka.ReadToEnd(ctx, brokers, r.t.entitlements, func(m kafka.Message) error {
			var rec schemas.Entitlement
			if len(m.Value) == 0 || json.Unmarshal(m.Value, &rec) != nil || rec.CustomerID == "" {
				return nil
			}
			last(rec.CustomerID).entitlement = &rec
			return nil
		})
	}
	if err == nil {
		err = kafka.ReadToEnd(ctx, brokers, r.t.mismatches, func(m kafka.Message) error {
			var rec schemas.Mismatch
			if len(m.Value) == 0 || json.Unmarshal(m.Value, &rec) != nil || rec.CustomerID == "" {
				return nil
			}
			e := last(rec.CustomerID)
			if rec.State == MismatchOpen {
				if e.open == nil {
					e.open = map[string]schemas.Mismatch{}
				}
				e.open[rec.MismatchID] = rec
			} else {
				delete(e.open, rec.MismatchID)
			}
			return nil
		})
	}
	if err != nil {
		return nil, err
	}
	ends, err := kafka.NewClient(brokers).EndOffsets(ctx, r.t.seen)
	if err != nil {
		return nil, err
	}
	r.state.SetQuiet(true)
	facts := 0
	err = kafka.ReadToEnd(ctx, brokers, r.t.seen, func(m kafka.Message) error {
		var se SeenEvent
		if len(m.Value) == 0 || json.Unmarshal(m.Value, &se) != nil || se.Fact == nil {
			return nil
		}
		r.state.Apply(se.Fact)
		facts++
		return nil
	})
	r.state.SetQuiet(false)
	if err != nil {
		return nil, err
	}
	for id, e := range r.emitted {
		if e.identity != nil && e.identity.MergedInto != "" {
			r.state.noteMerged(id, e.identity.MergedInto)
		}
		if e.entitlement != nil && e.entitlement.GraceUntil != nil && e.entitlement.Access {
			r.grace[id] = *e.entitlement.GraceUntil
		}
		r.openCount += len(e.open)
	}
	r.log.InfoContext(ctx, "state rebuilt from the fact log", "facts", facts, "customers", r.state.Len(),
		"emitted", len(r.emitted), "took", time.Since(start).Round(time.Millisecond).String())
	return ends, nil
}

// recover writes whatever the rebuilt state says that the outputs do not:
// the outputs of a batch whose facts were written just before a crash, and
// grace periods that ended while the reconciler was down.
func (r *Reconciler) recover(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.newBatch()
	for _, root := range r.state.Roots() {
		c := r.state.Customer(root)
		before := entSummary{Status: schemas.StatusNone}
		if e := b.last(c.id).entitlement; e != nil {
			before = entSummary{Status: e.Status, Access: e.Access, Plan: e.Plan, PeriodEnd: e.CurrentPeriodEnd, GraceUntil: e.GraceUntil, Flagged: e.Flagged, FlagReason: e.FlagReason}
		}
		if !before.equal(entSummaryOf(c.verdict)) {
			b.decide(c, "recomputed at start-up: "+c.verdict.Rule, before, c.verdict)
		}
		b.diff(root)
	}
	for _, id := range sortedKeys(r.emitted) {
		if _, live := r.state.live[id]; !live {
			b.retire(id)
		}
	}
	n := len(b.out)
	if err := b.flush(ctx); err != nil {
		return err
	}
	if n > 0 {
		r.log.InfoContext(ctx, "re-emitted outputs the last run had not written", "records", n)
	}
	return nil
}

// tail folds in the facts other instances apply, from the given offsets.
func (r *Reconciler) tail(ctx context.Context, ends map[int]int64) {
	remote := make(chan kafka.Message, 4096)
	var wg sync.WaitGroup
	for p, off := range ends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.tailPartition(ctx, p, off, remote)
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.applyRemote(ctx, remote)
	}()
	wg.Wait()
	close(remote)
	<-done
}

func (r *Reconciler) tailPartition(ctx context.Context, partition int, offset int64, out chan<- kafka.Message) {
	rd := kgo.NewReader(kgo.ReaderConfig{
		Brokers: r.cfg.KafkaBrokers, Topic: r.t.seen, Partition: partition,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 250 * time.Millisecond,
	})
	defer rd.Close()
	if err := rd.SetOffset(offset); err != nil {
		r.log.ErrorContext(ctx, "fact log tail: set offset", "partition", partition, "err", err)
		return
	}
	for {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.log.WarnContext(ctx, "fact log tail: read", "partition", partition, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		if kafka.HeaderValue(m, headerInstance) == r.instance {
			continue
		}
		select {
		case out <- m:
		case <-ctx.Done():
			return
		}
	}
}

// applyRemote folds in, batch by batch, the facts other instances applied,
// and writes the customers whose view changed. It writes no decisions: the
// instance that applied a fact explained it.
func (r *Reconciler) applyRemote(ctx context.Context, in <-chan kafka.Message) {
	for m := range in {
		batch := []kafka.Message{m}
	more:
		for len(batch) < r.maxBatch {
			select {
			case m, ok := <-in:
				if !ok {
					break more
				}
				batch = append(batch, m)
			default:
				break more
			}
		}
		if err := r.foldRemote(ctx, batch); err != nil && ctx.Err() == nil {
			r.log.ErrorContext(ctx, "fact log tail: writing outputs", "err", err)
		}
	}
}

func (r *Reconciler) foldRemote(ctx context.Context, msgs []kafka.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.newBatch()
	for _, m := range msgs {
		if r.state.Seen(string(m.Key)) {
			continue
		}
		var se SeenEvent
		if len(m.Value) == 0 || json.Unmarshal(m.Value, &se) != nil || se.Fact == nil {
			continue
		}
		res := r.state.Apply(se.Fact)
		if res.Duplicate || res.Ignored || res.CustomerID == "" {
			continue
		}
		b.losers = append(b.losers, res.Merged...)
		b.touched[res.Root] = time.Time{}
	}
	return b.flush(ctx)
}

// noteMerged records a merge known from the identity topic, so ids that lost
// a merge in an earlier run still resolve.
func (s *State) noteMerged(loser, survivor string) {
	if _, live := s.live[loser]; live {
		return
	}
	if _, ok := s.merged[loser]; !ok {
		s.merged[loser] = survivor
	}
}
