package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// Envelope header values of the records the reconciler writes.
const (
	envIdentity    = "identity/1"
	envEntitlement = "entitlement/1"
	envDecision    = "decision/1"
	envMismatch    = "mismatch/1"
	envSeen        = "seen/1"
	envDeadLetter  = "dead_letter/1"
)

// emitted is what the reconciler last wrote for one customer id: outputs are
// written only when they differ from it.
type emitted struct {
	identity    *schemas.Identity
	entitlement *schemas.Entitlement
	open        map[string]schemas.Mismatch // open findings by mismatch id
}

// batch collects the records one input batch (or a sweep, a start-up
// recovery, a remote fact) produces. flush writes them — facts first, then
// outputs — and only then records what was emitted.
type batch struct {
	r         *Reconciler
	facts     []kafka.Message
	out       []kafka.Message
	touched   map[ID]time.Time // customers to diff, with the newest ingest time of their facts
	losers    []string
	pending   map[string]*emitted
	latencies []time.Time
	counts    map[[2]string]int
	// gauges as of settle
	customers, open int
}

func (r *Reconciler) newBatch() *batch {
	return &batch{r: r, touched: map[ID]time.Time{}, pending: map[string]*emitted{}, counts: map[[2]string]int{}}
}

func (b *batch) count(source, result string) { b.counts[[2]string{source, result}]++ }

func (b *batch) input(m *kafka.Message, it *item) {
	r := b.r
	switch {
	case it.err != nil:
		b.count(it.source, "invalid")
		b.dead(m, it.err)
	case it.fact == nil:
		b.count(it.source, "ignored")
	case it.dup:
		// Ingest saw this event id before and wrote the original first, so
		// the original precedes it here: it changes nothing.
		b.count(it.source, "duplicate")
		b.duplicate(m, it.fact, "flagged as a duplicate by ingest")
	default:
		res := r.state.Apply(it.fact)
		switch {
		case res.Duplicate:
			b.count(it.source, "duplicate")
			b.duplicate(m, it.fact, "event already applied")
		case res.Ignored:
			b.count(it.source, "ignored")
		default:
			b.count(it.source, "applied")
			b.applied(it.fact, res)
		}
	}
}

// SeenEvent is a record of the fact log (reconcile.seen): one applied fact,
// keyed by its dedup key. The log is the reconciler's state: replaying it in
// any order rebuilds the same customers.
type SeenEvent struct {
	V        int       `json:"v"`
	Key      string    `json:"key"`
	Customer string    `json:"customer_id,omitempty"`
	Count    int64     `json:"count"` // the customer's fact count after this fact, at the instance that applied it (informational)
	Instance string    `json:"instance"`
	At       time.Time `json:"applied_at"`
	Fact     *Fact     `json:"fact"`
}

// headerInstance names the instance that wrote a fact-log record.
const headerInstance = "lr-instance"

func (b *batch) applied(f *Fact, res Result) {
	r := b.r
	m, err := kafka.JSON(r.t.seen, f.Key, envSeen, SeenEvent{V: 1, Key: f.Key, Customer: res.CustomerID, Count: res.Count, Instance: r.instance, At: r.now().UTC(), Fact: f})
	if err == nil {
		m.Headers = append(m.Headers, kafka.Header{Key: headerInstance, Value: []byte(r.instance)})
		b.facts = append(b.facts, m)
	}
	for i := range res.Decisions {
		b.decision(res.Decisions[i])
	}
	b.losers = append(b.losers, res.Merged...)
	if res.CustomerID != "" {
		if t, ok := b.touched[res.Root]; !ok || f.Received.After(t) {
			b.touched[res.Root] = f.Received
		}
	}
}

func (b *batch) decision(d schemas.Decision) {
	if m, err := kafka.JSON(b.r.t.decisions, d.CustomerID, envDecision, d); err == nil {
		b.out = append(b.out, m)
	}
}

func (b *batch) duplicate(m *kafka.Message, f *Fact, why string) {
	s := b.r.state
	customer := s.CustomerOfKey(f.Key)
	for _, l := range f.Links {
		if customer != "" {
			break
		}
		if root, ok := s.FindID(l); ok {
			customer = s.Customer(root).id
		}
	}
	if customer == "" {
		return
	}
	at := b.r.now().UTC()
	b.decision(schemas.Decision{
		V: 1, DecisionID: hash16(m.Topic + "|" + strconv.Itoa(m.Partition) + "|" + strconv.FormatInt(m.Offset, 10) + "|duplicate"),
		CustomerID: customer, Kind: schemas.DecisionDuplicate, Rule: f.Type + ": " + why + ": ignored",
		CausingIDs: []string{f.Key}, At: at, ProviderTime: f.At,
	})
}

func (b *batch) dead(m *kafka.Message, cause error) {
	rec := json.RawMessage(m.Value)
	if !json.Valid(m.Value) {
		rec, _ = json.Marshal(string(m.Value))
	}
	dl := schemas.DeadLetter{V: 1, Stage: "reconcile", Topic: m.Topic, Key: string(m.Key), Reason: cause.Error(), Record: rec, At: b.r.now().UTC()}
	if out, err := kafka.JSON(b.r.t.dlq, string(m.Key), envDeadLetter, dl); err == nil {
		b.out = append(b.out, out)
	}
	b.r.log.Warn("input record sent to the dead-letter topic", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", cause)
}

// last returns what was last emitted for a customer id (pending in this
// batch first).
func (b *batch) last(id string) *emitted {
	if e, ok := b.pending[id]; ok {
		return e
	}
	if e, ok := b.r.emitted[id]; ok {
		return e
	}
	return &emitted{}
}

func nextVersion(count, last int64) int64 {
	if count > last {
		return count
	}
	return last + 1
}

// diff writes whatever of a customer's identity, entitlement and findings
// differs from what was last emitted.
func (b *batch) diff(root ID) {
	r := b.r
	c := r.state.Customer(root)
	if c == nil || c.id == "" {
		return
	}
	last := b.last(c.id)
	next := &emitted{identity: last.identity, entitlement: last.entitlement, open: map[string]schemas.Mismatch{}}
	now := r.now().UTC()
	if ident := c.Identity(); last.identity == nil || !sameIdentity(*last.identity, ident) {
		var lv int64
		if last.identity != nil {
			lv = last.identity.Version
		}
		ident.Version, ident.UpdatedAt = nextVersion(c.count, lv), now
		b.emit(r.t.identity, c.id, envIdentity, ident)
		next.identity = &ident
	}
	if ent := c.Entitlement(); last.entitlement == nil || !sameEntitlement(*last.entitlement, ent) {
		var lv int64
		if last.entitlement != nil {
			lv = last.entitlement.Version
		}
		ent.Version, ent.UpdatedAt = nextVersion(c.count, lv), now
		if t := b.touched[root]; !t.IsZero() {
			// The newest event of this batch that touched the customer caused
			// this record: latency is measured from its arrival.
			ent.IngestedAt = t
		}
		b.emit(r.t.entitlements, c.id, envEntitlement, ent)
		next.entitlement = &ent
		if t := b.touched[root]; !t.IsZero() {
			b.latencies = append(b.latencies, t)
		}
	}
	for _, f := range r.state.Findings(c) {
		id := MismatchID(c.id, f.Kind, f.System)
		mm := schemas.Mismatch{V: 1, MismatchID: id, CustomerID: c.id, Kind: f.Kind, System: f.System, State: MismatchOpen, Detail: f.Detail, At: now}
		if prev, ok := last.open[id]; ok && prev.Detail == f.Detail {
			mm = prev
		} else {
			b.emit(r.t.mismatches, id, envMismatch, mm)
		}
		next.open[id] = mm
	}
	b.closeMissing(last.open, next.open, now)
	b.pending[c.id] = next
}

func (b *batch) closeMissing(was, now map[string]schemas.Mismatch, at time.Time) {
	ids := make([]string, 0, len(was))
	for id := range was {
		if _, ok := now[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		mm := was[id]
		mm.State, mm.At = MismatchClosed, at
		b.emit(b.r.t.mismatches, id, envMismatch, mm)
	}
}

// retire marks a customer id that lost a merge: its identity points to the
// survivor, its entitlement is deleted (sinks leave it alone), its findings
// close. Ids never emitted need nothing.
func (b *batch) retire(id string) {
	r := b.r
	last := b.last(id)
	survivor := r.state.Resolve(id)
	if survivor == "" && last.identity != nil {
		survivor = r.state.resolveByIdentity(last.identity)
	}
	if survivor == "" || survivor == id || (last.identity == nil && last.entitlement == nil && len(last.open) == 0) {
		return
	}
	now := r.now().UTC()
	next := &emitted{identity: last.identity, entitlement: last.entitlement}
	if last.identity != nil && last.identity.MergedInto != survivor {
		ident := schemas.Identity{V: 1, CustomerID: id, MergedInto: survivor, Version: last.identity.Version + 1, UpdatedAt: now}
		b.emit(r.t.identity, id, envIdentity, ident)
		next.identity = &ident
	}
	if last.entitlement != nil && !last.entitlement.Deleted {
		ent := schemas.Entitlement{V: schemas.EntitlementVersion, CustomerID: id, Status: schemas.StatusNone, Deleted: true,
			SourceEventIDs: []string{}, Version: last.entitlement.Version + 1, UpdatedAt: now}
		b.emit(r.t.entitlements, id, envEntitlement, ent)
		next.entitlement = &ent
	}
	b.closeMissing(last.open, nil, now)
	b.pending[id] = next
}

// decide adds an entitlement decision the loop itself takes (grace sweep,
// start-up recovery).
func (b *batch) decide(c *Customer, rule string, before entSummary, v Verdict) {
	aj, _ := json.Marshal(entSummaryOf(v))
	bj, _ := json.Marshal(before)
	b.decision(schemas.Decision{
		V: 1, DecisionID: hash16(c.id + "|" + schemas.DecisionEntitlement + "|" + rule + "|" + string(aj)), CustomerID: c.id,
		Kind: schemas.DecisionEntitlement, Rule: rule, Before: bj, After: aj, CausingIDs: v.Deciding, Flagged: v.Flagged,
		At: b.r.now().UTC(), ProviderTime: v.LastEventAt,
	})
}

func (b *batch) emit(topic, key, envelope string, v any) {
	m, err := kafka.JSON(topic, key, envelope, v)
	if err != nil {
		b.r.log.Error("encoding an output failed", "topic", topic, "err", err)
		return
	}
	b.out = append(b.out, m)
}

// flush queues the batch and waits until it is written; callers hold r.mu.
func (b *batch) flush(ctx context.Context) error { return b.start(ctx)() }

// start diffs the touched customers, records them as emitted and queues the
// batch on the reconciler's one writer, which writes facts then outputs;
// the returned wait blocks until they are acknowledged. Callers hold r.mu,
// so batches are queued, and so written, in the order they were applied.
// Facts go first: if the process dies between the two writes, the restarted
// reconciler rebuilds the facts and re-emits the outputs it finds missing
// (recover), so no output ever runs ahead of the fact log. What is recorded
// as emitted runs ahead of the writes; if a write fails the reconciler
// stops, and a new one rebuilds from what is durable.
func (b *batch) start(ctx context.Context) (wait func() error) {
	b.prepare()
	b.settle()
	return b.r.enqueue(ctx, b)
}

// prepare retires merged ids and diffs every touched customer.
func (b *batch) prepare() {
	r := b.r
	for _, id := range b.losers {
		b.retire(id)
	}
	roots := make([]ID, 0, len(b.touched))
	for root, t := range b.touched {
		rt := r.state.find(root)
		if rt != root {
			if cur, ok := b.touched[rt]; !ok || t.After(cur) {
				b.touched[rt] = t
			}
		}
		roots = append(roots, rt)
	}
	sort.Slice(roots, func(i, j int) bool { return roots[i] < roots[j] })
	for i, root := range roots {
		if i > 0 && roots[i-1] == root {
			continue
		}
		b.diff(root)
	}
}

// settle records what the batch emits as emitted, ahead of the write (see
// start), and snapshots the gauges it will set once written.
func (b *batch) settle() {
	r := b.r
	for id, e := range b.pending {
		if old := r.emitted[id]; old != nil {
			r.openCount -= len(old.open)
		}
		r.openCount += len(e.open)
		r.emitted[id] = e
		if e.entitlement != nil && e.entitlement.GraceUntil != nil && e.entitlement.Access {
			r.grace[id] = *e.entitlement.GraceUntil
		} else {
			delete(r.grace, id)
		}
	}
	b.customers, b.open = r.state.Len(), r.openCount
}

// written updates the metrics once the batch is durable; it runs on the
// writer, without r.mu.
func (b *batch) written() {
	r := b.r
	for k, n := range b.counts {
		r.met.events.WithLabelValues(k[0], k[1]).Add(float64(n))
	}
	written := map[string]int{}
	for _, m := range b.out {
		written[m.Topic]++
	}
	for t, n := range written {
		r.met.written.WithLabelValues(t[len(r.cfg.TopicPrefix):]).Add(float64(n))
	}
	if len(b.facts) > 0 {
		r.met.written.WithLabelValues("reconcile.seen").Add(float64(len(b.facts)))
	}
	now := time.Now()
	for _, t := range b.latencies {
		r.met.latency.Observe(now.Sub(t).Seconds())
	}
	r.met.customers.Set(float64(b.customers))
	r.met.open.Set(float64(b.open))
}

// write writes the batch's facts, then its outputs.
func (b *batch) write(ctx context.Context) error {
	r := b.r
	if len(b.facts) > 0 {
		if err := r.write(ctx, b.facts); err != nil {
			return fmt.Errorf("reconcile: write fact log: %w", err)
		}
	}
	if len(b.out) > 0 {
		if err := r.write(ctx, b.out); err != nil {
			return fmt.Errorf("reconcile: write outputs: %w", err)
		}
	}
	b.written()
	return nil
}
