package sinktest

import (
	"fmt"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/schemas"
	"github.com/launchready/launchready/sinks"
)

// Suite is what Run needs: the mapping the simulator was seeded from, a
// harness factory (one fresh simulator per scenario) and a tag id that
// exists in the provider but is not managed by the mapping.
type Suite struct {
	Mapping      *mapping.Mapping
	New          func(t *testing.T) Harness
	UnmanagedTag int64
}

// Run runs every conformance scenario against the provider.
func Run(t *testing.T, s Suite) {
	for _, c := range []struct {
		name string
		run  func(t *testing.T, s Suite, h Harness)
	}{
		{"PaidCustomerGainsEverything", paidGains},
		{"ReplayMakesNoWriteCall", replay},
		{"RefundRevokesAndKeepsUnmanaged", refund},
		{"PlanChangeGrantsBeforeRevoking", planChange},
		{"DryRunWritesNothing", dryRun},
		{"DriftIsCorrectedWithOnlyTheDifference", drift},
		{"ProspectIsNeverCreated", prospect},
		{"NewestVersionInBatchWins", coalesce},
		{"OlderVersionLaterIsSkipped", olderLater},
		{"PermanentErrorGoesToDLQAndWorkerMovesOn", permanent},
		{"ConvergesUnderFaults", faults},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, s, s.New(t))
		})
	}
}

func paidGains(t *testing.T, s Suite, h Harness) {
	e := Entitlement("cus_paid", "Paid.Customer@example.org", "pro", schemas.StatusActive, true, 1)
	out := &Capture{}
	st := Sync(t, h, s.Mapping, sinks.Options{}, out, e)
	got := h.Observe(t, e.Email)
	Converged(t, h, s.Mapping, e, got)
	if got.Invited > 1 {
		t.Errorf("customer invited %d times", got.Invited)
	}
	rs := out.Take()
	if n := statuses(rs); n[schemas.SinkOK] == 0 || n[schemas.SinkError]+n[schemas.SinkDLQ] > 0 {
		t.Errorf("results by status = %v, want only ok", n)
	}
	for _, r := range rs {
		if r.CustomerID != e.CustomerID || r.Provider != h.Provider.Name() || r.EntitlementVersion != 1 || r.ActionID == "" {
			t.Errorf("result %+v does not identify the action", r)
		}
	}
	if w := h.Writes(); w == 0 || int64(w) > st.Changes {
		t.Errorf("%d write calls for %d changed items: want 1 ≤ writes ≤ changes", w, st.Changes)
	}
}

func replay(t *testing.T, s Suite, h Harness) {
	es := []*schemas.Entitlement{
		Entitlement("cus_a", "a@example.org", "pro", schemas.StatusActive, true, 1),
		Entitlement("cus_b", "b@example.org", "starter", schemas.StatusRefunded, false, 2),
		Entitlement("cus_c", "c@example.org", "pro", schemas.StatusPastDue, true, 3),
	}
	out := &Capture{}
	Sync(t, h, s.Mapping, sinks.Options{}, out, es...)
	before := h.Writes()
	out.Take()
	for i := 1; i <= 2; i++ {
		// Later clocks: a "last synced" stamp must not cause a write.
		later := time.Now().Add(time.Duration(i) * time.Hour)
		Sync(t, h, s.Mapping, sinks.Options{Now: func() time.Time { return later }}, out, es...)
	}
	if d := h.Writes() - before; d != 0 {
		t.Errorf("replaying made %d write calls, want 0", d)
	}
	for _, r := range out.Take() {
		if r.Status != schemas.SinkNoop {
			t.Errorf("replay result %s %s %s, want noop", r.CustomerID, r.Action, r.Status)
		}
	}
	if d := h.Duplicates(); d != 0 {
		t.Errorf("%d duplicate writes", d)
	}
}

func refund(t *testing.T, s Suite, h Harness) {
	paid := Entitlement("cus_r", "r@example.org", "pro", schemas.StatusActive, true, 1)
	Sync(t, h, s.Mapping, sinks.Options{}, &Capture{}, paid)
	h.Seed(t, paid.Email, []int64{s.UnmanagedTag}, nil, nil)
	refunded := Entitlement("cus_r", "r@example.org", "pro", schemas.StatusRefunded, false, 2)
	Sync(t, h, s.Mapping, sinks.Options{}, &Capture{}, refunded)
	got := h.Observe(t, paid.Email)
	Converged(t, h, s.Mapping, refunded, got)
	if !got.Tags[s.UnmanagedTag] {
		t.Errorf("unmanaged tag %d was removed", s.UnmanagedTag)
	}
}

func planChange(t *testing.T, s Suite, h Harness) {
	Sync(t, h, s.Mapping, sinks.Options{}, &Capture{}, Entitlement("cus_p", "p@example.org", "starter", schemas.StatusActive, true, 1))
	pro := Entitlement("cus_p", "p@example.org", "pro", schemas.StatusActive, true, 2)
	out := &Capture{}
	Sync(t, h, s.Mapping, sinks.Options{}, out, pro)
	Converged(t, h, s.Mapping, pro, h.Observe(t, pro.Email))
	lastGrant, firstRevoke := -1, -1
	for i, r := range out.Take() {
		switch r.Action {
		case sinks.ActTag, sinks.ActAddGroup:
			lastGrant = i
		case sinks.ActUntag, sinks.ActRemoveGroup:
			if firstRevoke < 0 {
				firstRevoke = i
			}
		}
	}
	if lastGrant < 0 || firstRevoke < 0 || lastGrant > firstRevoke {
		t.Errorf("grants must precede revocations: last grant at %d, first revocation at %d", lastGrant, firstRevoke)
	}
}

func dryRun(t *testing.T, s Suite, h Harness) {
	e := Entitlement("cus_d", "d@example.org", "pro", schemas.StatusActive, true, 1)
	out := &Capture{}
	Sync(t, h, s.Mapping, sinks.Options{DryRun: true}, out, e)
	if w := h.Writes(); w != 0 {
		t.Errorf("dry run made %d write calls", w)
	}
	rs := out.Take()
	if len(rs) < 2 {
		t.Fatalf("dry run recorded %d actions, want the create and what follows it", len(rs))
	}
	for _, r := range rs {
		if r.Status != schemas.SinkDryRun {
			t.Errorf("dry-run result %s has status %s", r.Action, r.Status)
		}
	}
	if rs[0].Action != h.Provider.CreateAction() {
		t.Errorf("first dry-run action %s, want %s", rs[0].Action, h.Provider.CreateAction())
	}
	if h.Observe(t, e.Email).Found {
		t.Error("dry run created the customer")
	}
}

func drift(t *testing.T, s Suite, h Harness) {
	e := Entitlement("cus_x", "x@example.org", "pro", schemas.StatusActive, true, 1)
	tg := h.Provider.Target(s.Mapping.Desired(e, e.UpdatedAt), e)
	// The customer already holds every desired tag and group but one of
	// each, plus a managed tag that must go; fields are unset.
	var tags, groups []int64
	for i, r := range tg.Tags {
		if i > 0 {
			tags = append(tags, r.ID)
		}
	}
	for i, r := range tg.Groups {
		if i > 0 {
			groups = append(groups, r.ID)
		}
	}
	extra, ok := revokedRef(tg)
	if !ok {
		t.Fatal("the mapping manages no tag beyond a paid customer's")
	}
	tags = append(tags, extra.ID)
	h.Seed(t, e.Email, tags, groups, nil)
	before := h.Writes()
	out := &Capture{}
	Sync(t, h, s.Mapping, sinks.Options{}, out, e)
	Converged(t, h, s.Mapping, e, h.Observe(t, e.Email))
	want := 1 + 1 // the missing tag, the extra tag
	if len(tg.Groups) > 0 {
		want++
	}
	if len(tg.Fields) > 0 {
		want++ // one field write carries every field
	}
	if got := h.Writes() - before; got != want {
		t.Errorf("%d write calls, want %d (only the difference)", got, want)
	}
	if d := h.Duplicates(); d != 0 {
		t.Errorf("%d duplicate writes", d)
	}
}

func revokedRef(tg sinks.Target) (mapping.Ref, bool) {
	want := map[int64]bool{}
	for _, r := range tg.Tags {
		want[r.ID] = true
	}
	for _, r := range tg.ManagedTags {
		if !want[r.ID] {
			return r, true
		}
	}
	return mapping.Ref{}, false
}

func prospect(t *testing.T, s Suite, h Harness) {
	e := Entitlement("cus_n", "n@example.org", "", schemas.StatusNone, false, 1)
	e.CurrentPeriodEnd = nil
	out := &Capture{}
	Sync(t, h, s.Mapping, sinks.Options{}, out, e)
	if w := h.Writes(); w != 0 {
		t.Errorf("%d write calls for a prospect the provider does not know", w)
	}
	if h.Observe(t, e.Email).Found {
		t.Error("prospect was created")
	}
	rs := out.Take()
	if len(rs) != 1 || rs[0].Status != schemas.SinkNoop {
		t.Errorf("results %+v, want one noop", rs)
	}
}

func coalesce(t *testing.T, s Suite, h Harness) {
	v1 := Entitlement("cus_v", "v@example.org", "pro", schemas.StatusActive, true, 1)
	v3 := Entitlement("cus_v", "v@example.org", "pro", schemas.StatusCanceled, false, 3)
	v2 := Entitlement("cus_v", "v@example.org", "pro", schemas.StatusPastDue, true, 2)
	out := &Capture{}
	Sync(t, h, s.Mapping, sinks.Options{}, out, v1, v3, v2)
	for _, r := range out.Take() {
		if r.EntitlementVersion != 3 {
			t.Errorf("result for version %d: older versions in a batch must be superseded", r.EntitlementVersion)
		}
	}
	got := h.Observe(t, v1.Email)
	if got.Found {
		Converged(t, h, s.Mapping, v3, got)
	}
	if h.Writes() != 0 && !got.Found {
		t.Errorf("write calls for a customer that ends without access and was never created")
	}
}

func olderLater(t *testing.T, s Suite, h Harness) {
	v2 := Entitlement("cus_o", "o@example.org", "pro", schemas.StatusActive, true, 2)
	v1 := Entitlement("cus_o", "o@example.org", "starter", schemas.StatusActive, true, 1)
	out := &Capture{}
	w := sinks.NewWorker(Config(t), s.Mapping, h.Provider, out, sinks.Options{})
	for _, e := range []*schemas.Entitlement{v2, v1} {
		if err := w.Handle(t.Context(), []kafka.Message{Message(t, e)}); err != nil {
			t.Fatal(err)
		}
	}
	Converged(t, h, s.Mapping, v2, h.Observe(t, v2.Email))
	if st := w.Stats(); st.Superseded != 1 {
		t.Errorf("superseded = %d, want 1", st.Superseded)
	}
}

func permanent(t *testing.T, s Suite, h Harness) {
	bad := Entitlement("cus_bad", "not-an-email", "pro", schemas.StatusActive, true, 1)
	good := Entitlement("cus_good", "good@example.org", "pro", schemas.StatusActive, true, 1)
	out := &Capture{}
	Sync(t, h, s.Mapping, sinks.Options{}, out, bad, good)
	Converged(t, h, s.Mapping, good, h.Observe(t, good.Email))
	if len(out.Dead) != 1 || out.Dead[0].Key != "cus_bad" || out.Dead[0].Reason == "" || len(out.Dead[0].Record) == 0 {
		t.Fatalf("dead letters %+v, want one for cus_bad with reason and record", out.Dead)
	}
	n := 0
	for _, r := range out.Take() {
		if r.CustomerID == "cus_bad" && r.Status == schemas.SinkDLQ {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d dlq results for cus_bad, want 1", n)
	}
}

func faults(t *testing.T, s Suite, h Harness) {
	var es []*schemas.Entitlement
	for i := range 6 {
		status, access, plan := schemas.StatusActive, true, "pro"
		if i%3 == 1 {
			status, access = schemas.StatusRefunded, false
		}
		if i%3 == 2 {
			plan = "starter"
		}
		es = append(es, Entitlement(fmt.Sprintf("cus_f%d", i), fmt.Sprintf("f%d@example.org", i), plan, status, access, 1))
	}
	h.Faults(0.3, 0.1)
	Sync(t, h, s.Mapping, sinks.Options{}, &Capture{}, es...)
	h.Faults(0, 0)
	if h.Injected() == 0 {
		t.Fatal("no fault was injected")
	}
	for _, e := range es {
		Converged(t, h, s.Mapping, e, h.Observe(t, e.Email))
	}
	before := h.Writes()
	Sync(t, h, s.Mapping, sinks.Options{}, &Capture{}, es...)
	if d := h.Writes() - before; d != 0 {
		t.Errorf("replay after faults made %d write calls", d)
	}
	if v := h.Violations(); v != 0 {
		t.Errorf("%d rate-limit violations", v)
	}
}
