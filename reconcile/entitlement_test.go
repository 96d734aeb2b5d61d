package reconcile

import (
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/reconcile/internal/fixture"
	"github.com/launchready/launchready/schemas"
)

func TestEntitlementStateMachine(t *testing.T) {
	t.Parallel()
	renewal := base + 30*day
	cases := []struct {
		name   string
		now    int64
		events []fixture.Event
		status string
		access bool
		plan   string
		rule   string // a substring of the verdict's rule
		flag   bool
		grace  int64 // expected grace_until (unix), 0 for none
	}{
		{name: "paid checkout grants access", now: base + 1,
			events: []fixture.Event{paidCheckout("e1", base)},
			status: schemas.StatusActive, access: true, rule: "is active"},
		{name: "plan comes from the price via the mapping", now: base + 1,
			events: []fixture.Event{paidCheckout("e1", base), sub("e2", "customer.subscription.created", base, "active"), invoice("e3", "invoice.paid", base, "in_1", "subscription_create")},
			status: schemas.StatusActive, access: true, plan: "pro"},
		{name: "plan from checkout metadata naming the plan", now: base + 1,
			events: []fixture.Event{fixture.CheckoutCompleted("e1", base, fixture.Checkout{ID: "cs_1", Customer: "cus_1", Email: "a@example.org", Mode: "payment", Metadata: map[string]any{"product": "starter"}})},
			status: schemas.StatusActive, access: true, plan: "starter", rule: "one-off purchase"},
		{name: "a setup checkout (a saved card) grants nothing", now: base + 1,
			events: []fixture.Event{fixture.CheckoutCompleted("e1", base, fixture.Checkout{ID: "cs_1", Customer: "cus_1", Mode: "setup", PaymentStatus: "no_payment_required"})},
			status: schemas.StatusNone, access: false},
		{name: "a free trial checkout (no payment required) grants the plan", now: base + 1,
			events: []fixture.Event{fixture.CheckoutCompleted("e1", base, fixture.Checkout{ID: "cs_1", Customer: "cus_1", Sub: "sub_1", PaymentStatus: "no_payment_required"}),
				sub("e2", "customer.subscription.created", base, "trialing")},
			status: schemas.StatusActive, access: true, plan: "pro"},
		{name: "failed first payment grants nothing", now: base + 1,
			events: []fixture.Event{sub("e1", "customer.subscription.created", base, "incomplete"), invoice("e2", "invoice.payment_failed", base, "in_1", "subscription_create")},
			status: schemas.StatusNone, access: false, rule: "first payment"},
		{name: "failed first payment without a subscription event grants nothing", now: base + 1,
			events: []fixture.Event{invoice("e2", "invoice.payment_failed", base, "in_1", "subscription_create")},
			status: schemas.StatusNone, access: false},
		{name: "first payment retried and paid", now: base + 2*day,
			events: []fixture.Event{invoice("e1", "invoice.payment_failed", base, "in_1", "subscription_create"), invoice("e2", "invoice.paid", base+day, "in_1", "subscription_create")},
			status: schemas.StatusActive, access: true, plan: "pro"},
		{name: "failed renewal keeps access during grace", now: renewal + 3600,
			events: []fixture.Event{invoice("e1", "invoice.paid", base, "in_1", "subscription_create"), invoice("e2", "invoice.payment_failed", renewal, "in_2", "subscription_cycle")},
			status: schemas.StatusPastDue, access: true, grace: renewal + 3*day, rule: "grace"},
		{name: "failed renewal after the grace period: no access", now: renewal + 4*day,
			events: []fixture.Event{invoice("e1", "invoice.paid", base, "in_1", "subscription_create"), invoice("e2", "invoice.payment_failed", renewal, "in_2", "subscription_cycle"),
				sub("e3", "customer.subscription.updated", renewal+2*day, "past_due")},
			status: schemas.StatusPastDue, access: false, grace: renewal + 3*day, rule: "grace period is over"},
		{name: "grace counts from the first failure of the run", now: renewal + 2*day + 3600,
			events: []fixture.Event{invoice("e1", "invoice.paid", base, "in_1", "subscription_create"), invoice("e2", "invoice.payment_failed", renewal, "in_2", "subscription_cycle"),
				invoice("e3", "invoice.payment_failed", renewal+2*day, "in_2", "subscription_cycle")},
			status: schemas.StatusPastDue, access: true, grace: renewal + 3*day},
		{name: "late payment_failed after a newer invoice.paid changes nothing", now: renewal + day,
			events: []fixture.Event{invoice("e1", "invoice.paid", base, "in_1", "subscription_create"), invoice("e3", "invoice.paid", renewal, "in_2", "subscription_cycle"),
				invoice("e2", "invoice.payment_failed", renewal-3600, "in_2", "subscription_cycle")},
			status: schemas.StatusActive, access: true},
		{name: "subscription status beats the event type at the same second", now: renewal + 1,
			events: []fixture.Event{invoice("e1", "invoice.paid", base, "in_1", "subscription_create"), invoice("e2", "invoice.payment_failed", renewal, "in_2", "subscription_cycle"),
				sub("e3", "customer.subscription.updated", renewal, "active")},
			status: schemas.StatusActive, access: true},
		{name: "unpaid after retries: no access", now: renewal + day,
			events: []fixture.Event{invoice("e1", "invoice.paid", base, "in_1", "subscription_create"), sub("e2", "customer.subscription.updated", renewal, "unpaid")},
			status: schemas.StatusPastDue, access: false, rule: "unpaid"},
		{name: "subscription deleted cancels", now: renewal,
			events: []fixture.Event{paidCheckout("e1", base), sub("e2", "customer.subscription.deleted", base+10*day, "canceled")},
			status: schemas.StatusCanceled, access: false, plan: "pro"},
		{name: "a late invoice.paid never revives a canceled subscription", now: renewal,
			events: []fixture.Event{sub("e2", "customer.subscription.deleted", base+10*day, "canceled"), invoice("e3", "invoice.paid", base+11*day, "in_1", "subscription_cycle")},
			status: schemas.StatusCanceled, access: false},
		{name: "full refund revokes access", now: base + day,
			events: []fixture.Event{paidCheckout("e1", base), invoice("e2", "invoice.paid", base, "in_1", "subscription_create"), sub("e3", "customer.subscription.deleted", base+100, "canceled"), refund("e4", base+100, "ch_in_1", 4900, 4900)},
			status: schemas.StatusRefunded, access: false, rule: "full refund"},
		{name: "refund while the subscription runs is flagged", now: base + day,
			events: []fixture.Event{invoice("e2", "invoice.paid", base, "in_1", "subscription_create"), sub("e3", "customer.subscription.updated", base, "active"), refund("e4", base+100, "ch_in_1", 4900, 4900)},
			status: schemas.StatusRefunded, access: false, flag: true},
		{name: "partial refund keeps access", now: base + day,
			events: []fixture.Event{invoice("e2", "invoice.paid", base, "in_1", "subscription_create"), refund("e4", base+100, "ch_in_1", 4900, 1000)},
			status: schemas.StatusActive, access: true},
		{name: "a refund is terminal unless a newer payment happens", now: renewal + day,
			events: []fixture.Event{invoice("e1", "invoice.paid", base, "in_1", "subscription_create"), refund("e2", base+100, "ch_in_1", 4900, 4900), invoice("e3", "invoice.paid", renewal, "in_2", "subscription_cycle")},
			status: schemas.StatusActive, access: true},
		{name: "open chargeback revokes and flags", now: base + day,
			events: []fixture.Event{invoice("e1", "invoice.paid", base, "in_1", "subscription_create"),
				fixture.Charge("e2", "charge.succeeded", base, fixture.Chg{ID: "ch_1", Customer: "cus_1", Amount: 4900}),
				fixture.Dispute("e3", "charge.dispute.created", base+3600, "dp_1", "ch_1", "needs_response")},
			status: schemas.StatusDisputed, access: false, flag: true, rule: "chargeback dp_1 open"},
		{name: "chargeback won restores access", now: base + 10*day,
			events: []fixture.Event{invoice("e1", "invoice.paid", base, "in_1", "subscription_create"),
				fixture.Charge("e2", "charge.succeeded", base, fixture.Chg{ID: "ch_1", Customer: "cus_1", Amount: 4900}),
				fixture.Dispute("e3", "charge.dispute.created", base+3600, "dp_1", "ch_1", "needs_response"),
				fixture.Dispute("e4", "charge.dispute.closed", base+5*day, "dp_1", "ch_1", "won")},
			status: schemas.StatusActive, access: true},
		{name: "chargeback lost stays revoked", now: base + 10*day,
			events: []fixture.Event{invoice("e1", "invoice.paid", base, "in_1", "subscription_create"),
				fixture.Charge("e2", "charge.succeeded", base, fixture.Chg{ID: "ch_1", Customer: "cus_1", Amount: 4900}),
				fixture.Dispute("e4", "charge.dispute.closed", base+5*day, "dp_1", "ch_1", "lost"),
				fixture.Dispute("e3", "charge.dispute.created", base+3600, "dp_1", "ch_1", "needs_response")},
			status: schemas.StatusDisputed, access: false, flag: true, rule: "lost"},
		{name: "an unmapped price is flagged", now: base + 1,
			events: []fixture.Event{fixture.Subscription("e1", "customer.subscription.created", base, fixture.Sub{ID: "sub_1", Customer: "cus_1", Status: "active", Price: "price_other", Product: "prod_other", PeriodEnd: base + 30*day})},
			status: schemas.StatusActive, access: true, flag: true},
		{name: "a second running subscription keeps access when one is canceled", now: base + 20*day,
			events: []fixture.Event{sub("e1", "customer.subscription.created", base, "active"),
				fixture.Subscription("e2", "customer.subscription.created", base+day, fixture.Sub{ID: "sub_2", Customer: "cus_1", Status: "active", Price: "price_starter_monthly", Product: "prod_starter", PeriodEnd: base + 31*day}),
				sub("e3", "customer.subscription.deleted", base+10*day, "canceled")},
			status: schemas.StatusActive, access: true, plan: "starter"},
		{name: "legacy API shapes read the same", now: base + 1,
			events: []fixture.Event{
				fixture.Subscription("e1", "customer.subscription.created", base, fixture.Sub{ID: "sub_1", Customer: "cus_1", Status: "active", Price: "price_pro_yearly", Product: "prod_pro", PeriodEnd: base + 365*day, Legacy: true}),
				fixture.Invoice("e2", "invoice.paid", base, fixture.Inv{ID: "in_1", Customer: "cus_1", Sub: "sub_1", Status: "paid", Reason: "subscription_create", Price: "price_pro_yearly", Product: "prod_pro", PeriodEnd: base + 365*day, Legacy: true})},
			status: schemas.StatusActive, access: true, plan: "pro"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, tc.now)
			for _, e := range tc.events {
				w.stripe(e)
			}
			c := w.customer("stripe:cus_1")
			v := c.Verdict()
			if v.Status != tc.status || v.Access != tc.access {
				t.Fatalf("status %s access %v, want %s %v (rule %q)", v.Status, v.Access, tc.status, tc.access, v.Rule)
			}
			if tc.plan != "" && v.Plan != tc.plan {
				t.Errorf("plan %q, want %q", v.Plan, tc.plan)
			}
			if tc.rule != "" && !strings.Contains(v.Rule, tc.rule) {
				t.Errorf("rule %q does not mention %q", v.Rule, tc.rule)
			}
			if v.Flagged != tc.flag {
				t.Errorf("flagged %v (%q), want %v", v.Flagged, v.FlagReason, tc.flag)
			}
			if tc.grace != 0 && (v.GraceUntil == nil || v.GraceUntil.Unix() != tc.grace) {
				t.Errorf("grace until %v, want %v", v.GraceUntil, time.Unix(tc.grace, 0).UTC())
			}
			if tc.status != schemas.StatusNone && (len(v.Deciding) == 0 || v.LastEventAt.IsZero()) {
				t.Errorf("verdict names no deciding event: %+v", v)
			}
		})
	}
}

func TestEntitlementPeriodEndNeverMovesBack(t *testing.T) {
	t.Parallel()
	w := newWorld(t, base+40*day)
	w.stripe(invoice("e2", "invoice.paid", base+30*day, "in_2", "subscription_cycle"))
	w.stripe(invoice("e1", "invoice.paid", base, "in_1", "subscription_create"))
	v := w.customer("stripe:cus_1").Verdict()
	if v.PeriodEnd == nil || v.PeriodEnd.Unix() != base+60*day {
		t.Fatalf("period end %v, want the later renewal's", v.PeriodEnd)
	}
}

func TestDuplicateChangesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, base+day)
	f := stripeFact(t, paidCheckout("e1", base))
	first := w.apply(f)
	before := w.customer("stripe:cus_1").Entitlement()
	again := stripeFact(t, paidCheckout("e1", base))
	again.Received = again.Received.Add(time.Hour)
	res := w.apply(again)
	if !res.Duplicate || len(res.Decisions) != 0 || res.CustomerID != first.CustomerID || res.Count != first.Count {
		t.Fatalf("duplicate result %+v", res)
	}
	if after := w.customer("stripe:cus_1").Entitlement(); !sameEntitlement(before, after) || !before.IngestedAt.Equal(after.IngestedAt) {
		t.Fatalf("a duplicate changed the entitlement:\n%+v\n%+v", before, after)
	}
}

func TestGraceEndsWithTime(t *testing.T) {
	t.Parallel()
	renewal := base + 30*day
	w := newWorld(t, renewal+3600)
	w.stripe(invoice("e1", "invoice.paid", base, "in_1", "subscription_create"))
	res := w.stripe(invoice("e2", "invoice.payment_failed", renewal, "in_2", "subscription_cycle"))
	if v := w.customer("stripe:cus_1").Verdict(); !v.Access || v.Status != schemas.StatusPastDue {
		t.Fatalf("during grace: %+v", v)
	}
	w.now = time.Unix(renewal+3*day+1, 0)
	old, c := w.s.Reevaluate(res.Root)
	if !old.Access || c.Verdict().Access || old.same(c.Verdict()) {
		t.Fatalf("after grace: was %+v now %+v", old, c.Verdict())
	}
}
