package reconcile

import (
	"fmt"
	"sort"
	"time"

	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/schemas"
)

// Verdict is a customer's entitlement as a function of their billing facts,
// with the rule and the facts that decided it.
type Verdict struct {
	Status     string
	Access     bool
	Plan       string
	PeriodEnd  *time.Time
	GraceUntil *time.Time
	Flagged    bool
	FlagReason string
	// Rule says why, in words, e.g. "charge.refunded: full refund of ch_1 revokes access".
	Rule string
	// Deciding are the event ids of the facts that decided the verdict.
	Deciding    []string
	LastEventAt time.Time
	// Received is the newest ingest time among the deciding facts.
	Received time.Time
}

// same reports whether two verdicts grant and show the same thing.
func (v Verdict) same(o Verdict) bool {
	return statusOf(v) == statusOf(o) && v.Access == o.Access && v.Plan == o.Plan && eqTime(v.PeriodEnd, o.PeriodEnd) &&
		eqTime(v.GraceUntil, o.GraceUntil) && v.Flagged == o.Flagged && v.FlagReason == o.FlagReason
}

// statusOf reads a verdict's status; a customer never evaluated (no billing
// fact yet) has the zero verdict, whose empty status means none.
func statusOf(v Verdict) string {
	if v.Status == "" {
		return schemas.StatusNone
	}
	return v.Status
}

func eqTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// signal is one billing fact's say on a subscription's state. Among signals
// the newest wins; at the same second a subscription's own status beats what
// an invoice or checkout implies (status beats event type).
type signal struct {
	f      *Fact
	rank   int // 3 subscription status, 2 invoice paid, 1 checkout paid, 0 invoice failed
	status string
}

func (a signal) after(b signal) bool {
	if !a.f.At.Equal(b.f.At) {
		return a.f.At.After(b.f.At)
	}
	if a.rank != b.rank {
		return a.rank > b.rank
	}
	return a.f.Key > b.f.Key
}

type subView struct {
	id        string
	signals   []signal
	terminal  *signal // canceled or incomplete_expired: Stripe never revives those
	periodEnd int64
	planFacts []*Fact // facts naming a price, product or plan, oldest first
}

// Subscription statuses that end a subscription for good.
func terminalStatus(s string) bool { return s == "canceled" || s == "incomplete_expired" }

// Dispute statuses still waiting for an outcome.
func openDispute(s string) bool {
	switch s {
	case "warning_needs_response", "warning_under_review", "needs_response", "under_review":
		return true
	}
	return false
}

func newer(a, b *Fact) bool {
	if !a.At.Equal(b.At) {
		return a.At.After(b.At)
	}
	return a.Key > b.Key
}

// Evaluate computes the entitlement from a customer's billing facts. It is a
// pure function of the set of facts (and now, which only ends grace periods):
// the order facts arrived in never matters.
//
// Rules, in precedence order:
//  1. an open chargeback revokes access and flags the customer for a person;
//  2. a full refund (or a lost chargeback) newer than the newest payment
//     revokes access: it is terminal unless a newer payment happens;
//  3. otherwise the best subscription decides: per subscription the newest
//     signal wins (a canceled subscription stays canceled); past_due after a
//     renewal failure keeps access until the grace period ends, a failed
//     first payment grants nothing; a one-off paid checkout grants access.
func Evaluate(facts []*Fact, m *mapping.Mapping, now time.Time) Verdict {
	sorted := make([]*Fact, 0, len(facts))
	for _, f := range facts {
		if f.Billing != nil {
			sorted = append(sorted, f)
		}
	}
	sort.Slice(sorted, func(i, j int) bool { return newer(sorted[j], sorted[i]) })

	subs := map[string]*subView{}
	sub := func(id string) *subView {
		sv := subs[id]
		if sv == nil {
			sv = &subView{id: id}
			subs[id] = sv
		}
		return sv
	}
	var lastPayment *Fact
	refunds := map[string]*Fact{}  // charge → earliest fact showing it fully refunded
	disputes := map[string]*Fact{} // dispute → newest fact
	for _, f := range sorted {
		b := f.Billing
		switch b.Object {
		case ObjSubscription:
			sv := sub(b.Sub)
			s := signal{f: f, rank: 3, status: b.Status}
			sv.signals = append(sv.signals, s)
			if terminalStatus(b.Status) && (sv.terminal == nil || s.after(*sv.terminal)) {
				sv.terminal = &s
			}
			sv.periodEnd = max(sv.periodEnd, b.PeriodEnd)
			sv.planFacts = append(sv.planFacts, f)
		case ObjInvoice, ObjCheckout:
			sv := sub(b.Sub)
			if b.Paid {
				rank := 2
				if b.Object == ObjCheckout {
					rank = 1
				}
				sv.signals = append(sv.signals, signal{f: f, rank: rank, status: "active"})
				sv.periodEnd = max(sv.periodEnd, b.PeriodEnd)
				sv.planFacts = append(sv.planFacts, f)
				if lastPayment == nil || newer(f, lastPayment) {
					lastPayment = f
				}
			} else if b.Failed && b.Sub != "" {
				sv.signals = append(sv.signals, signal{f: f, rank: 0, status: "failed"})
			}
		case ObjCharge:
			if b.FullRefund {
				if r := refunds[b.ID]; r == nil || newer(r, f) {
					refunds[b.ID] = f
				}
			}
		case ObjDispute:
			if d := disputes[b.ID]; d == nil || disputeAfter(f, d) {
				disputes[b.ID] = f
			}
		}
	}

	v := Verdict{Status: schemas.StatusNone, Rule: "no payment"}
	var deciding []*Fact
	var best *subOutcome
	for _, id := range sortedKeys(subs) {
		o := subs[id].outcome(m.GracePeriod, now)
		if o != nil && (best == nil || o.better(best)) {
			best = o
		}
	}
	if best != nil {
		v.Status, v.Access, v.Rule = best.status, best.access, best.rule
		v.GraceUntil = best.graceUntil
		if pe := best.sv.periodEnd; pe > 0 {
			t := time.Unix(pe, 0).UTC()
			v.PeriodEnd = &t
		}
		deciding = append(deciding, best.deciding...)
		if pf := planFact(best.sv, m, &v); pf != nil {
			deciding = append(deciding, pf)
		}
	}

	// Revocations: full refunds and lost chargebacks newer than the newest payment.
	var revoke *Fact
	for _, f := range refunds {
		if revoke == nil || newer(f, revoke) {
			revoke = f
		}
	}
	for _, f := range disputes {
		st := f.Billing.Status
		if st == "lost" || st == "charge_refunded" {
			if revoke == nil || newer(f, revoke) {
				revoke = f
			}
		}
	}
	if revoke != nil && (lastPayment == nil || !lastPayment.At.After(revoke.At)) {
		b := revoke.Billing
		wasActive := v.Status == schemas.StatusActive
		v.Access, v.GraceUntil = false, nil
		if b.Object == ObjDispute {
			v.Status = schemas.StatusDisputed
			v.Flagged, v.FlagReason = true, fmt.Sprintf("chargeback %s on %s was %s", b.ID, b.Charge, b.Status)
			v.Rule = fmt.Sprintf("%s: chargeback %s %s: access revoked", revoke.Type, b.ID, b.Status)
		} else {
			v.Status = schemas.StatusRefunded
			v.Rule = fmt.Sprintf("%s: full refund of %s revokes access", revoke.Type, b.ID)
			if wasActive && best != nil && best.sv.id != "" {
				v.Flagged, v.FlagReason = true, fmt.Sprintf("refunded while subscription %s is still active in Stripe", best.sv.id)
			}
		}
		deciding = append(deciding, revoke)
	}
	// An open chargeback overrides everything until it is decided.
	var open *Fact
	for _, f := range disputes {
		if openDispute(f.Billing.Status) && (open == nil || newer(f, open)) {
			open = f
		}
	}
	if open != nil {
		b := open.Billing
		v.Status, v.Access, v.GraceUntil = schemas.StatusDisputed, false, nil
		v.Flagged, v.FlagReason = true, fmt.Sprintf("chargeback %s open on %s: a person must respond", b.ID, b.Charge)
		v.Rule = fmt.Sprintf("%s: chargeback %s open: access revoked, flagged for a person", open.Type, b.ID)
		deciding = append(deciding, open)
	}
	v.Deciding, v.LastEventAt, v.Received = decidingIDs(deciding)
	return v
}

func disputeAfter(a, b *Fact) bool {
	if !a.At.Equal(b.At) {
		return a.At.After(b.At)
	}
	// At the same second a decided dispute beats an open one.
	ac, bc := !openDispute(a.Billing.Status), !openDispute(b.Billing.Status)
	if ac != bc {
		return ac
	}
	return a.Key > b.Key
}

type subOutcome struct {
	sv         *subView
	status     string
	access     bool
	graceUntil *time.Time
	rule       string
	at         time.Time
	deciding   []*Fact
}

func (o *subOutcome) rank() int {
	switch {
	case o.status == schemas.StatusActive:
		return 5
	case o.status == schemas.StatusPastDue && o.access:
		return 4
	case o.status == schemas.StatusPastDue:
		return 3
	case o.status == schemas.StatusCanceled:
		return 2
	}
	return 1
}

// better orders subscriptions: the one granting most wins, then the newest.
func (o *subOutcome) better(b *subOutcome) bool {
	if o.rank() != b.rank() {
		return o.rank() > b.rank()
	}
	if !o.at.Equal(b.at) {
		return o.at.After(b.at)
	}
	return o.sv.id > b.sv.id
}

// outcome is one subscription's state (nil when it has no signal).
func (sv *subView) outcome(grace time.Duration, now time.Time) *subOutcome {
	if len(sv.signals) == 0 {
		return nil
	}
	latest := sv.signals[0]
	everPaid := false
	for _, s := range sv.signals {
		if s.after(latest) {
			latest = s
		}
		if s.rank == 1 || s.rank == 2 {
			everPaid = true
		}
	}
	if sv.terminal != nil {
		latest = *sv.terminal
	}
	o := &subOutcome{sv: sv, at: latest.f.At, deciding: []*Fact{latest.f}}
	name := "subscription " + sv.id
	if sv.id == "" {
		name = "one-off purchase"
	}
	status := latest.status
	if status == "failed" {
		b := latest.f.Billing
		if b.Reason == "subscription_create" || (b.Reason == "" && !everPaid) {
			status = "incomplete"
		} else {
			status = "past_due"
		}
	}
	switch status {
	case "active", "trialing":
		o.status, o.access = schemas.StatusActive, true
		o.rule = fmt.Sprintf("%s: %s is %s", latest.f.Type, name, status)
	case "past_due":
		o.status = schemas.StatusPastDue
		since := sv.dunningSince(latest)
		if grace > 0 {
			g := since.Add(grace).UTC()
			o.graceUntil = &g
			o.access = now.Before(g)
		}
		if o.access {
			o.rule = fmt.Sprintf("%s: renewal of %s failed: access kept during grace until %s", latest.f.Type, name, o.graceUntil.Format(time.RFC3339))
		} else {
			o.rule = fmt.Sprintf("%s: renewal of %s failed and the grace period is over: no access", latest.f.Type, name)
		}
	case "unpaid":
		o.status = schemas.StatusPastDue
		o.rule = fmt.Sprintf("%s: %s is unpaid after its retries: no access", latest.f.Type, name)
	case "incomplete", "incomplete_expired":
		o.status = schemas.StatusNone
		o.rule = fmt.Sprintf("%s: first payment of %s failed or never completed: no access", latest.f.Type, name)
	case "canceled", "paused":
		o.status = schemas.StatusCanceled
		o.rule = fmt.Sprintf("%s: %s is %s", latest.f.Type, name, status)
	default:
		o.status = schemas.StatusNone
		o.rule = fmt.Sprintf("%s: %s has status %q: no access", latest.f.Type, name, status)
	}
	return o
}

// dunningSince is when the current run of payment failures began: the
// earliest failure newer than the last good signal.
func (sv *subView) dunningSince(latest signal) time.Time {
	var good *signal
	for i, s := range sv.signals {
		if (s.status == "active" || s.status == "trialing") && (good == nil || s.after(*good)) {
			good = &sv.signals[i]
		}
	}
	since := latest.f.At
	for _, s := range sv.signals {
		bad := s.status == "failed" || s.status == "past_due"
		if bad && (good == nil || s.after(*good)) && s.f.At.Before(since) {
			since = s.f.At
		}
	}
	return since
}

// planFact sets v.Plan from the newest fact of sv naming a mapped price,
// product or plan, and flags a price the mapping does not know.
func planFact(sv *subView, m *mapping.Mapping, v *Verdict) *Fact {
	var unmapped *Fact
	for i := len(sv.planFacts) - 1; i >= 0; i-- {
		f := sv.planFacts[i]
		b := f.Billing
		if plan, ok := m.PlanFor(b.Price, b.Product); ok {
			v.Plan = plan
			return f
		}
		if h := b.PlanHint; h != "" {
			if plan, ok := m.PlanFor(h, h); ok {
				v.Plan = plan
				return f
			}
			if _, ok := m.Plan(h); ok {
				v.Plan = h
				return f
			}
		}
		if unmapped == nil && (b.Price != "" || b.Product != "") {
			unmapped = f
		}
	}
	if unmapped != nil {
		v.Flagged = true
		v.FlagReason = fmt.Sprintf("price %s (product %s) is not in the mapping: no plan", unmapped.Billing.Price, unmapped.Billing.Product)
	}
	return unmapped
}

func decidingIDs(fs []*Fact) (ids []string, last, received time.Time) {
	seen := map[string]bool{}
	for _, f := range fs {
		if !seen[f.EventID] {
			seen[f.EventID] = true
			ids = append(ids, f.EventID)
		}
		if f.At.After(last) {
			last = f.At
		}
		if f.Received.After(received) {
			received = f.Received
		}
	}
	sort.Strings(ids)
	if ids == nil {
		ids = []string{}
	}
	return ids, last, received
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
