package reconcile

import (
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/reconcile/internal/fixture"
	"github.com/launchready/launchready/schemas"
)

func TestNormEmail(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"  Maria.Lopez@Example.ORG ": "maria.lopez@example.org",
		"maria@example.org":          "maria@example.org",
		"Maria Lopez":                "",
		"":                           "",
		"@example.org":               "",
		"maria@":                     "",
		"Maria <maria@example.org>":  "",
	} {
		if got := NormEmail(in); got != want {
			t.Errorf("NormEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

func at(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

func TestCheckoutLinksAppStripeKitCircle(t *testing.T) {
	t.Parallel()
	w := newWorld(t, base+day)
	w.change(fixture.UserRow(schemas.OpCreate, "0/10", 42, "maria.lopez@example.org", "", at(base-day)))
	w.stripe(paidCheckout("e1", base))
	w.apply(kitFact(t, fixture.KitEvent("k1", "subscriber.created", at(base+60), 4455667, "MARIA.Lopez@example.org ", "active", at(base+61))))
	w.apply(circleFact(t, fixture.CircleMember(fixture.Member{ID: 31337, UserID: 90210, Email: "maria.lopez@EXAMPLE.org", Updated: at(base + 120)}, at(base+121))))
	w.change(fixture.SessionRow("0/20", "chat_abc", 42, at(base+200)))
	if w.s.Len() != 1 {
		t.Fatalf("%d customers, want 1", w.s.Len())
	}
	id := w.customer("user:42").Identity()
	if id.CustomerID != "cus:u:42" || id.UserID != "42" || id.Email != "maria.lopez@example.org" ||
		!eqStrings(id.Stripe, []string{"cus_1"}) || !eqStrings(id.Kit, []string{"4455667"}) || !eqStrings(id.Circle, []string{"31337"}) ||
		!eqStrings(id.Sessions, []string{"chat_abc"}) || !eqStrings(id.Emails, []string{"maria.lopez@example.org"}) {
		t.Fatalf("identity %+v", id)
	}
}

func TestEmailOnlyCustomerMergesIntoAppUser(t *testing.T) {
	t.Parallel()
	w := newWorld(t, base+day)
	r1 := w.apply(kitFact(t, fixture.KitEvent("k1", "subscriber.created", at(base), 7, "ana@example.org", "active", at(base))))
	emailOnly := r1.CustomerID
	if !strings.HasPrefix(emailOnly, "cus:e:") {
		t.Fatalf("email-only customer id %q", emailOnly)
	}
	r2 := w.change(fixture.UserRow(schemas.OpCreate, "0/10", 9, "Ana@example.org", "", at(base+60)))
	if r2.CustomerID != "cus:u:9" || len(r2.Merged) != 1 || r2.Merged[0] != emailOnly {
		t.Fatalf("merge result %+v", r2)
	}
	var merge *schemas.Decision
	for i, d := range r2.Decisions {
		if d.Kind == schemas.DecisionMerge {
			merge = &r2.Decisions[i]
		}
	}
	if merge == nil || !strings.Contains(merge.Rule, "app user id wins") || merge.CustomerID != "cus:u:9" {
		t.Fatalf("merge decision %+v", r2.Decisions)
	}
	if got := w.s.Resolve(emailOnly); got != "cus:u:9" {
		t.Fatalf("old id resolves to %q", got)
	}
	if w.s.Len() != 1 {
		t.Fatalf("%d customers", w.s.Len())
	}
}

func TestMergeSurvivorIndependentOfOrder(t *testing.T) {
	t.Parallel()
	mk := func() []*Fact {
		return []*Fact{
			kitFact(t, fixture.KitEvent("k1", "subscriber.created", at(base), 7, "ana@example.org", "active", at(base))),
			stripeFact(t, fixture.Customer("e1", "customer.created", base+10, "cus_9", "ana@example.org", nil, "")),
			stripeFact(t, fixture.CheckoutCompleted("e2", base+20, fixture.Checkout{ID: "cs_1", Customer: "cus_9", ClientRef: "77"})),
			circleFact(t, fixture.CircleMember(fixture.Member{ID: 5, Email: "other@example.org", SSO: "77", Updated: at(base + 30)}, at(base+30))),
		}
	}
	var want schemas.Identity
	for i, order := range [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}, {1, 3, 0, 2}} {
		w := newWorld(t, base+day)
		fs := mk()
		for _, j := range order {
			w.apply(fs[j])
		}
		if w.s.Len() != 1 {
			t.Fatalf("order %v: %d customers", order, w.s.Len())
		}
		got := w.customer("user:77").Identity()
		if i == 0 {
			want = got
			if want.CustomerID != "cus:u:77" || want.Email != "ana@example.org" {
				t.Fatalf("identity %+v", want)
			}
		} else if !sameIdentity(got, want) {
			t.Fatalf("order %v: %+v, want %+v", order, got, want)
		}
	}
}

func TestEmailChangeMovesTheLinkNotTheCustomer(t *testing.T) {
	t.Parallel()
	w := newWorld(t, base+day)
	w.stripe(fixture.Customer("e1", "customer.created", base, "cus_1", "old@example.org", nil, ""))
	before := w.customer("stripe:cus_1").ID()
	prev := "Old@example.org"
	res := w.stripe(fixture.Customer("e2", "customer.updated", base+100, "cus_1", "New@example.org", &prev, ""))
	c := w.customer("stripe:cus_1")
	if c.ID() != before || res.CustomerID != before {
		t.Fatalf("the customer changed: %s → %s", before, c.ID())
	}
	id := c.Identity()
	if id.Email != "new@example.org" || !eqStrings(id.Emails, []string{"new@example.org", "old@example.org"}) {
		t.Fatalf("identity %+v", id)
	}
	found := false
	for _, d := range res.Decisions {
		found = found || (d.Kind == schemas.DecisionEmailChange && strings.Contains(d.Rule, "old@example.org → new@example.org"))
	}
	if !found {
		t.Fatalf("no email change decision: %+v", res.Decisions)
	}
	// A late customer.created with the old address does not move it back.
	w2 := newWorld(t, base+day)
	w2.stripe(fixture.Customer("e2", "customer.updated", base+100, "cus_1", "new@example.org", &prev, ""))
	w2.stripe(fixture.Customer("e1", "customer.created", base, "cus_1", "old@example.org", nil, ""))
	if got := w2.customer("stripe:cus_1").Identity(); !sameIdentity(got, id) {
		t.Fatalf("out of order: %+v, want %+v", got, id)
	}
}

func TestAppEmailIsTheCurrentEmail(t *testing.T) {
	t.Parallel()
	w := newWorld(t, base+day)
	w.change(fixture.UserRow(schemas.OpCreate, "0/10", 3, "a@example.org", "", at(base)))
	w.apply(kitFact(t, fixture.KitEvent("k1", "subscriber.created", at(base+500), 1, "a@example.org", "active", at(base))))
	res := w.change(fixture.UserRow(schemas.OpUpdate, "0/20", 3, "b@example.org", "a@example.org", at(base+100)))
	if res.CustomerID != "cus:u:3" {
		t.Fatalf("customer %q", res.CustomerID)
	}
	// Kit still says a@ (and more recently), but the app's user table wins.
	if id := w.customer("user:3").Identity(); id.Email != "b@example.org" || len(id.Kit) != 1 {
		t.Fatalf("identity %+v", id)
	}
}

func TestDisplayNamesNeverJoin(t *testing.T) {
	t.Parallel()
	w := newWorld(t, base+day)
	w.apply(circleFact(t, fixture.CircleMember(fixture.Member{ID: 1, Email: "maria1@example.org", Updated: at(base)}, at(base))))
	w.apply(circleFact(t, fixture.CircleMember(fixture.Member{ID: 2, Email: "maria2@example.org", Updated: at(base)}, at(base))))
	if w.s.Len() != 2 {
		t.Fatalf("%d customers: members with one name but two emails were joined", w.s.Len())
	}
}

func TestChargebackWaitsForItsCharge(t *testing.T) {
	t.Parallel()
	w := newWorld(t, base+day)
	w.stripe(invoice("e1", "invoice.paid", base, "in_1", "subscription_create"))
	res := w.stripe(fixture.Dispute("e2", "charge.dispute.created", base+10, "dp_1", "ch_9", "needs_response"))
	if res.CustomerID != "" || w.s.Len() != 1 {
		t.Fatalf("a dispute on an unknown charge named a customer: %+v", res)
	}
	if v := w.customer("stripe:cus_1").Verdict(); v.Status != schemas.StatusActive {
		t.Fatalf("status %s before the charge is linked", v.Status)
	}
	w.stripe(fixture.Charge("e3", "charge.succeeded", base, fixture.Chg{ID: "ch_9", Customer: "cus_1", Amount: 4900}))
	if v := w.customer("stripe:cus_1").Verdict(); v.Status != schemas.StatusDisputed || !v.Flagged {
		t.Fatalf("after the charge links: %+v", v)
	}
}

func TestSinkResultFollowsMergedCustomer(t *testing.T) {
	t.Parallel()
	w := newWorld(t, base+day)
	r := w.apply(kitFact(t, fixture.KitEvent("k1", "subscriber.created", at(base), 7, "ana@example.org", "active", at(base))))
	w.change(fixture.UserRow(schemas.OpCreate, "0/10", 9, "ana@example.org", "", at(base+60)))
	sr := fixture.SinkResult(r.CustomerID, "stale@example.org", schemas.ProviderKit, "tag", "3100", schemas.SinkOK, 1, at(base+120))
	f := FactFromSink(&sr)
	res := w.apply(f)
	if res.CustomerID != "cus:u:9" || w.s.Len() != 1 {
		t.Fatalf("sink result went to %q (%d customers)", res.CustomerID, w.s.Len())
	}
	if len(f.Links) != 1 || !w.customer("user:9").Has(f.Links[0]) {
		t.Fatalf("sink fact links %v", f.Links)
	}
}
