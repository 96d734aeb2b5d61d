package sinks_test

import (
	"context"
	"testing"
	"time"

	"github.com/launchready/launchready/schemas"
	circlesim "github.com/launchready/launchready/simulate/circle"
	kitsim "github.com/launchready/launchready/simulate/kit"
	"github.com/launchready/launchready/sinks"
	"github.com/launchready/launchready/sinks/sinktest"
)

// A paid customer gains the access group, tags and profile fields; a refund
// removes them and adds "refunded" in Kit; a record no provider accepts is
// dead-lettered while the worker moves on. Everything through the real Kafka.
func TestSinkGrantsThenRevokesOnRefund(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	paid := sinktest.Entitlement("cus_maria", "Maria.Lopez@example.org", "pro", schemas.StatusActive, true, 1)
	bad := sinktest.Entitlement("cus_bad", "not-an-email", "pro", schemas.StatusActive, true, 1)
	r.publish(bad, paid)
	_, stop := r.start(sinks.Options{})
	r.waitConverged(30*time.Second, paid)

	mb, _ := r.circle.Member(paid.Email)
	if len(mb.AccessGroups) != 1 || mb.AccessGroups[0] != 1001 || len(mb.Tags) != 1 || mb.Tags[0] != 2001 {
		t.Errorf("circle member %+v: want access group 1001 and tag 2001", mb)
	}
	if mb.Fields["plan"] != "pro" || mb.Fields["billing_status"] != "active" || mb.Fields["next_renewal"] != "2026-04-02" || mb.Fields["last_synced_at"] == "" {
		t.Errorf("circle profile fields %v", mb.Fields)
	}
	sub, _ := r.kit.Subscriber(paid.Email)
	if len(sub.Tags) != 1 || sub.Tags[0] != 3001 || sub.Fields["plan"] != "pro" {
		t.Errorf("kit subscriber %+v: want tag 3001 and plan pro", sub)
	}

	refunded := sinktest.Entitlement("cus_maria", "maria.lopez@example.org", "pro", schemas.StatusRefunded, false, 2)
	r.publish(refunded)
	r.waitConverged(30*time.Second, refunded)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mb, _ = r.circle.Member(paid.Email)
	if len(mb.AccessGroups) != 0 || len(mb.Tags) != 0 || mb.Fields["billing_status"] != "refunded" || mb.Fields["next_renewal"] != "" {
		t.Errorf("circle after refund %+v: no group, no tag, status refunded, no renewal", mb)
	}
	sub, _ = r.kit.Subscriber(paid.Email)
	if len(sub.Tags) != 1 || sub.Tags[0] != 3102 || sub.Fields["billing_status"] != "refunded" {
		t.Errorf("kit after refund %+v: only the refunded tag", sub)
	}

	got := map[string]int{}
	for _, res := range r.results() {
		if res.CustomerID == "cus_maria" && res.Status == schemas.SinkOK {
			got[res.Provider+" "+res.Action]++
		}
	}
	for _, want := range []string{"circle create_member", "circle add_access_group", "circle remove_access_group", "circle untag", "circle set_fields",
		"kit upsert_subscriber", "kit tag", "kit untag", "kit set_fields"} {
		if got[want] == 0 {
			t.Errorf("no ok result for %q in lr.sink.results (got %v)", want, got)
		}
	}
	dead := map[string]bool{}
	for _, d := range r.dead() {
		if d.Key == "cus_bad" {
			dead[d.Stage] = true
		}
	}
	if !dead["sink.kit"] || !dead["sink.circle"] {
		t.Errorf("dead letters for cus_bad by stage: %v, want sink.kit and sink.circle", dead)
	}
	if s := r.circle.Stats(); s.Invitations != 1 || s.DuplicateTags+s.DuplicateGroupAdds != 0 {
		t.Errorf("circle stats %+v: one invitation, no duplicates", s)
	}
}

// Replaying the whole entitlements topic, twice, makes no write call.
func TestSinkReplayingTheTopicMakesNoWriteCall(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	es := customers(8, "replay", func(i int) (string, string, bool) {
		switch i % 4 {
		case 0:
			return "pro", schemas.StatusActive, true
		case 1:
			return "starter", schemas.StatusPastDue, true
		case 2:
			return "pro", schemas.StatusRefunded, false
		}
		return "starter", schemas.StatusCanceled, false
	})
	r.publish(es...)
	st, stop := r.start(sinks.Options{Group: "first"})
	r.waitSynced(st, int64(len(es)), 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if p := r.problems(es...); len(p) > 0 {
		t.Fatalf("not converged: %v", p)
	}
	kitWrites, circleWrites := r.kit.Stats().Writes, r.circle.Stats().Writes
	if kitWrites == 0 || circleWrites == 0 {
		t.Fatalf("the first sync made no write (kit %d, circle %d)", kitWrites, circleWrites)
	}
	for _, group := range []string{"replay-1", "replay-2"} {
		st, stop := r.start(sinks.Options{Group: group})
		r.waitSynced(st, int64(len(es)), 30*time.Second)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		for _, w := range st.Workers() {
			// A rebalance may hand a batch over twice: at least one noop each.
			if s := w.Stats(); s.Noop < int64(len(es)) || s.Actions != 0 || s.Changed != 0 {
				t.Errorf("%s %s: %+v, want a noop for each of %d customers and no action", group, w.Provider().Name(), s, len(es))
			}
		}
	}
	if k, c := r.kit.Stats().Writes-kitWrites, r.circle.Stats().Writes-circleWrites; k != 0 || c != 0 {
		t.Errorf("replays made %d kit and %d circle write calls, want 0", k, c)
	}
	if d := r.kit.Stats().DuplicateTags + r.circle.Stats().DuplicateTags; d != 0 {
		t.Errorf("%d duplicate tags", d)
	}
}

// Under a 429 storm, 5xx answers and slow answers every customer
// converges, and the client never exceeds a provider's rate limit. Not
// parallel: it measures arrival times, which a busy test process skews.
func TestSinkConvergesUnderStormAndErrorsWithinTheRateLimit(t *testing.T) {
	r := newRig(t, rigOptions{
		// Limits small enough that the client's limiter is what paces it.
		kitLimit: 20, kitWindow: time.Second, circleLimit: 20, circleWindow: time.Second,
		kitFaults:    kitsim.Faults{Errors: 0.15, Throttle: 0.05, Slow: 0.2, Delay: 30 * time.Millisecond},
		circleFaults: circlesim.Faults{Errors: 0.15, Throttle: 0.05, Slow: 0.2, Delay: 30 * time.Millisecond},
	})
	es := customers(16, "storm", func(i int) (string, string, bool) {
		if i%4 == 3 {
			return "pro", schemas.StatusRefunded, false
		}
		if i%2 == 1 {
			return "starter", schemas.StatusActive, true
		}
		return "pro", schemas.StatusActive, true
	})
	r.kit.Storm(1500 * time.Millisecond)
	r.circle.Storm(1500 * time.Millisecond)
	r.publish(es...)
	_, stop := r.start(sinks.Options{})
	r.waitConverged(90*time.Second, es...)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]struct{ requests, violations, injected, dup int }{
		"kit":    {r.kit.Stats().TotalRequests(), r.kit.Stats().Violations, r.kit.Stats().Injected, r.kit.Stats().DuplicateTags},
		"circle": {r.circle.Stats().TotalRequests(), r.circle.Stats().Violations, r.circle.Stats().Injected, r.circle.Stats().DuplicateTags + r.circle.Stats().DuplicateGroupAdds},
	} {
		if s.requests <= 2*20 {
			t.Errorf("%s: %d requests: too few for the limit (20 per window) to pace the client", name, s.requests)
		}
		if s.violations != 0 {
			t.Errorf("%s: %d rate-limit violations, want 0", name, s.violations)
		}
		if s.injected == 0 {
			t.Errorf("%s: no fault injected", name)
		}
		if s.dup != 0 {
			t.Errorf("%s: %d duplicate writes", name, s.dup)
		}
	}
	if n := r.circle.Stats().Invitations; n != 12 {
		t.Errorf("%d invitations, want one per customer with access (12)", n)
	}
}

// Dropped connections (before the provider acted) are retried until every
// customer converges, without a duplicate write; a replay then writes nothing.
func TestSinkConvergesWhenConnectionsDrop(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{kitFaults: kitsim.Faults{Drop: 0.15}, circleFaults: circlesim.Faults{Drop: 0.15}})
	es := customers(10, "drop", func(i int) (string, string, bool) {
		if i%3 == 2 {
			return "starter", schemas.StatusDisputed, false
		}
		return "pro", schemas.StatusActive, true
	})
	r.publish(es...)
	_, stop := r.start(sinks.Options{})
	r.waitConverged(60*time.Second, es...)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	r.kit.SetFaults(kitsim.Faults{})
	r.circle.SetFaults(circlesim.Faults{})
	if r.kit.Stats().Injected == 0 || r.circle.Stats().Injected == 0 {
		t.Fatal("no connection was dropped")
	}
	kw, cw := r.kit.Stats().Writes, r.circle.Stats().Writes
	st, stop := r.start(sinks.Options{Group: "replay"})
	r.waitSynced(st, int64(len(es)), 30*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if k, c := r.kit.Stats().Writes-kw, r.circle.Stats().Writes-cw; k != 0 || c != 0 {
		t.Errorf("replay made %d kit and %d circle write calls", k, c)
	}
	if d := r.kit.Stats().DuplicateTags + r.circle.Stats().DuplicateTags + r.circle.Stats().DuplicateGroupAdds; d != 0 {
		t.Errorf("%d duplicate writes", d)
	}
}

// --dry-run records every would-be action and calls no write endpoint.
func TestSinkDryRunRecordsDiffsWithoutWriting(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	es := customers(4, "dry", func(i int) (string, string, bool) { return "pro", schemas.StatusActive, true })
	if _, err := r.kit.AddSubscriber(es[0].Email, "", []int64{3100}, nil); err != nil {
		t.Fatal(err)
	}
	r.publish(es...)
	st := r.stage(sinks.Options{DryRun: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := st.DiffAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, w := range st.Workers() {
		if s := w.Stats(); s.Customers != int64(len(es)) || s.Changed != int64(len(es)) {
			t.Errorf("%s: %+v, want %d customers that would change", w.Provider().Name(), s, len(es))
		}
	}
	if k, c := r.kit.Stats().Writes, r.circle.Stats().Writes; k != 0 || c != 0 {
		t.Fatalf("dry run made %d kit and %d circle write calls", k, c)
	}
	byStatus := map[string]int{}
	for _, res := range r.results() {
		byStatus[res.Status]++
	}
	if byStatus[schemas.SinkDryRun] == 0 || len(byStatus) != 1 {
		t.Errorf("results by status %v, want only dry_run", byStatus)
	}
	if p := r.problems(es...); len(p) == 0 {
		t.Error("a dry run must leave the providers as they were")
	}
}
