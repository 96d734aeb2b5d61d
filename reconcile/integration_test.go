package reconcile

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/reconcile/internal/fixture"
	"github.com/launchready/launchready/schemas"
)

// customerWith returns the live customer whose identity satisfies ok.
func customerWith(o *outputs, ok func(schemas.Identity) bool) (string, int) {
	id, n := "", 0
	for k, v := range o.live() {
		if ok(v) {
			id, n = k, n+1
		}
	}
	return id, n
}

func holds(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TestIntegrationScenarios runs one reconciler on the real Kafka and walks
// through the scenarios on separate customers.
func TestIntegrationScenarios(t *testing.T) {
	h := newHarness(t)
	h.start(Options{})
	T := time.Now().Add(-time.Hour).Unix()

	appUser := changeInput(fixture.UserRow(schemas.OpCreate, "0/A1", 1001, "Ana.K@Example.org", "", time.Unix(T-day, 0)))
	checkoutA := []input{
		appUser,
		stripeInput(fixture.CheckoutCompleted("evt_A1", T, fixture.Checkout{ID: "cs_A", Customer: "cus_A", Email: "ana.k@EXAMPLE.org", ClientRef: "1001", Sub: "sub_A"})),
		stripeInput(fixture.Subscription("evt_A2", "customer.subscription.created", T, fixture.Sub{ID: "sub_A", Customer: "cus_A", Status: "active", Price: "price_pro_monthly", Product: "prod_pro", PeriodEnd: T + 30*day})),
		stripeInput(fixture.Invoice("evt_A3", "invoice.paid", T, fixture.Inv{ID: "in_A", Customer: "cus_A", Email: "ana.k@example.org", Sub: "sub_A", Status: "paid", Reason: "subscription_create", Price: "price_pro_monthly", Product: "prod_pro", PeriodEnd: T + 30*day, Amount: 4900, Charge: "ch_A"})),
		rawInput(fixture.KitEvent("kit-A1", "subscriber.created", time.Unix(T+60, 0), 880001, " ANA.K@example.org", "active", time.Now())),
		rawInput(fixture.CircleMember(fixture.Member{ID: 770001, UserID: 990001, Email: "ana.k@example.org", Updated: time.Unix(T+120, 0), Tags: []int64{2001}}, time.Now())),
	}
	isA := func(i schemas.Identity) bool {
		return holds(i.Stripe, "cus_A") || holds(i.Kit, "880001") || holds(i.Circle, "770001") || i.UserID == "1001"
	}

	t.Run("a checkout for an app user links Stripe, Circle and Kit into one customer", func(t *testing.T) {
		// Delivered backwards: Circle and Kit first, the app user last.
		for i := len(checkoutA) - 1; i >= 0; i-- {
			h.send(checkoutA[i])
		}
		o := h.waitFor("one linked customer", 30*time.Second, func(o *outputs) bool {
			id, n := customerWith(o, isA)
			return n == 1 && id == "cus:u:1001" && len(o.live()[id].Circle) == 1 && len(o.live()[id].Kit) == 1 &&
				o.entitlement[id].Status == schemas.StatusActive && o.entitlement[id].Plan == "pro"
		})
		id := o.live()["cus:u:1001"]
		if id.Email != "ana.k@example.org" || !holds(id.Stripe, "cus_A") || !holds(id.Kit, "880001") || !holds(id.Circle, "770001") || id.UserID != "1001" {
			t.Fatalf("identity %+v", id)
		}
		e := o.entitlement["cus:u:1001"]
		if !e.Access || e.CurrentPeriodEnd == nil || e.IngestedAt.IsZero() || len(e.SourceEventIDs) == 0 || !holds(e.KitSubscriberIDs, "880001") {
			t.Fatalf("entitlement %+v", e)
		}
		if len(o.decisionsOf("cus:u:1001", schemas.DecisionEntitlement)) == 0 {
			t.Fatal("no entitlement decision explains the access")
		}
		for _, d := range o.decisions {
			if d.Rule == "" || len(d.CausingIDs) == 0 || d.DecisionID == "" {
				t.Fatalf("decision without rule, cause or id: %+v", d)
			}
		}
	})

	t.Run("a refund revokes access", func(t *testing.T) {
		inv := fixture.Invoice("evt_B1", "invoice.paid", T, fixture.Inv{ID: "in_B", Customer: "cus_B", Email: "bo@example.org", Sub: "sub_B", Status: "paid", Reason: "subscription_create", Price: "price_starter_monthly", Product: "prod_starter", PeriodEnd: T + 30*day, Amount: 4900, Charge: "ch_B"})
		h.send(stripeInput(inv))
		isB := func(i schemas.Identity) bool { return holds(i.Stripe, "cus_B") }
		o := h.waitFor("B active", 30*time.Second, func(o *outputs) bool {
			id, _ := customerWith(o, isB)
			return id != "" && o.entitlement[id].Access
		})
		id, _ := customerWith(o, isB)
		h.send(stripeInput(fixture.Charge("evt_B2", "charge.refunded", T+100, fixture.Chg{ID: "ch_B", Customer: "cus_B", Email: "bo@example.org", Amount: 4900, Refunded: 4900})))
		o = h.waitFor("B refunded", 30*time.Second, func(o *outputs) bool { return o.entitlement[id].Status == schemas.StatusRefunded })
		if e := o.entitlement[id]; e.Access || e.Plan != "starter" || !holds(e.SourceEventIDs, "evt_B2") {
			t.Fatalf("entitlement after refund %+v", e)
		}
		found := false
		for _, d := range o.decisionsOf(id, schemas.DecisionEntitlement) {
			found = found || (strings.Contains(d.Rule, "full refund") && holds(d.CausingIDs, "stripe:evt_B2"))
		}
		if !found {
			t.Fatalf("no refund decision: %+v", o.decisionsOf(id, ""))
		}
	})

	t.Run("a failed first payment grants nothing", func(t *testing.T) {
		h.send(
			stripeInput(fixture.Subscription("evt_C1", "customer.subscription.created", T, fixture.Sub{ID: "sub_C", Customer: "cus_C", Status: "incomplete", Price: "price_pro_monthly", Product: "prod_pro", PeriodEnd: T + 30*day})),
			stripeInput(fixture.Invoice("evt_C2", "invoice.payment_failed", T, fixture.Inv{ID: "in_C", Customer: "cus_C", Email: "cy@example.org", Sub: "sub_C", Status: "open", Reason: "subscription_create", Price: "price_pro_monthly", Product: "prod_pro", PeriodEnd: T + 30*day, Amount: 4900})),
		)
		// Facts are logged before outputs: once both are in the fact log,
		// wait for the customer's records, then read every one written.
		deadline := time.Now().Add(30 * time.Second)
		for {
			o := h.outputs(true)
			_, ok1 := o.seen["stripe:evt_C1"]
			_, ok2 := o.seen["stripe:evt_C2"]
			if ok1 && ok2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("C's events were not applied within 30s")
			}
			time.Sleep(250 * time.Millisecond)
		}
		isC := func(i schemas.Identity) bool { return holds(i.Stripe, "cus_C") }
		o := h.waitFor("C's records", 30*time.Second, func(o *outputs) bool {
			id, _ := customerWith(o, isC)
			return id != "" && len(o.history[id]) > 0
		})
		id, _ := customerWith(o, isC)
		for _, e := range o.history[id] {
			if e.Access || e.Status != schemas.StatusNone {
				t.Fatalf("a failed first payment granted %+v", e)
			}
		}
		for _, d := range o.decisionsOf(id, schemas.DecisionEntitlement) {
			var after entSummary
			if err := json.Unmarshal(d.After, &after); err != nil || after.Access || after.Status != schemas.StatusNone {
				t.Fatalf("decision %s grants %s (%v)", d.Rule, d.After, err)
			}
		}
	})

	t.Run("a replayed history creates no second customer", func(t *testing.T) {
		before := h.outputs(false)
		ent := before.entitlement["cus:u:1001"]
		var replay []input
		for _, in := range checkoutA {
			replay = append(replay, in)
		}
		// Ingest-flagged duplicates as well (a Stripe backfill over a window
		// the webhooks already delivered).
		dup := fixture.CheckoutCompleted("evt_A1", T, fixture.Checkout{ID: "cs_A", Customer: "cus_A", Email: "ana.k@EXAMPLE.org", ClientRef: "1001", Sub: "sub_A"}).Raw(time.Now())
		dup.Duplicate, dup.Source = true, schemas.SourceBackfill
		replay = append(replay, rawInput(dup))
		h.send(replay...)
		o := h.waitFor("duplicate decisions", 30*time.Second, func(o *outputs) bool {
			return len(o.decisionsOf("cus:u:1001", schemas.DecisionDuplicate)) >= len(replay)
		})
		if _, n := customerWith(o, isA); n != 1 {
			t.Fatalf("%d live customers hold A's ids after the replay", n)
		}
		if len(o.live()) != len(before.live()) {
			t.Fatalf("live customers %d → %d after a replay", len(before.live()), len(o.live()))
		}
		if e := o.entitlement["cus:u:1001"]; e.Version != ent.Version || !sameEntitlement(e, ent) {
			t.Fatalf("the replay changed the entitlement: %+v → %+v", ent, e)
		}
	})

	t.Run("a paid customer still tagged as a lead opens a mismatch, the untag closes it", func(t *testing.T) {
		mid := MismatchID("cus:u:1001", schemas.MismatchPaidTaggedLead, "kit")
		h.send(sinkInput(fixture.SinkResult("cus:u:1001", "ana.k@example.org", "kit", "untag", "3100", schemas.SinkDryRun, 2, time.Now())))
		h.waitFor("mismatch open", 30*time.Second, func(o *outputs) bool { return o.mismatch[mid].State == MismatchOpen })
		h.send(sinkInput(fixture.SinkResult("cus:u:1001", "ana.k@example.org", "kit", "untag", "3100", schemas.SinkOK, 3, time.Now().Add(time.Second))))
		o := h.waitFor("mismatch closed", 30*time.Second, func(o *outputs) bool { return o.mismatch[mid].State == MismatchClosed })
		if m := o.mismatch[mid]; m.Detail == "" || m.Kind != schemas.MismatchPaidTaggedLead || m.System != "kit" {
			t.Fatalf("mismatch %+v", m)
		}
	})

	t.Run("an undecodable record goes to the dead-letter topic", func(t *testing.T) {
		h.send(input{topic: "raw.stripe", key: "junk", value: []byte(`{"v":1,"provider":"stripe","event_id":"evt_junk","body":{"id":"evt_junk","data":{"object":{"object":"charge","customer":{"id":5}}}}}`)},
			input{topic: "raw.kit", key: "junk", value: []byte(`not json`)})
		o := h.waitFor("dead letters", 30*time.Second, func(o *outputs) bool { return len(o.dlq) >= 2 })
		for _, d := range o.dlq {
			if d.Stage != "reconcile" || d.Reason == "" || len(d.Record) == 0 {
				t.Fatalf("dead letter %+v", d)
			}
		}
	})
}

// TestIntegrationFiftyUsers: fifty people, each an app user, a Stripe
// customer with a subscription, a Kit subscriber and a Circle member, with
// emails in mixed case, a third of the events delivered twice, everything
// shuffled. Exactly fifty customers must come out, none a duplicate.
func TestIntegrationFiftyUsers(t *testing.T) {
	h := newHarness(t)
	h.start(Options{})
	r := rand.New(rand.NewSource(50))
	mangle := func(s string) string {
		b := []byte(s)
		for i := range b {
			if r.Intn(2) == 0 && b[i] >= 'a' && b[i] <= 'z' {
				b[i] -= 'a' - 'A'
			}
		}
		return string(b)
	}
	T := time.Now().Add(-24 * time.Hour).Unix()
	var in []input
	for i := 0; i < 50; i++ {
		email := fmt.Sprintf("user%02d.name@example.org", i)
		uid := int64(5000 + i)
		cus, sub, inv := fmt.Sprintf("cus_U%02d", i), fmt.Sprintf("sub_U%02d", i), fmt.Sprintf("in_U%02d", i)
		t0 := T + int64(i)*60
		cs := fixture.Checkout{ID: "cs_" + cus, Customer: cus, Email: mangle(email), Sub: sub}
		if i%2 == 0 {
			cs.ClientRef = fmt.Sprint(uid) // the other half joins by email alone
		}
		m := fixture.Member{ID: int64(60000 + i), UserID: int64(70000 + i), Email: mangle(email), Updated: time.Unix(t0+300, 0), Tags: []int64{2001}}
		if i%3 == 0 {
			m.SSO = fmt.Sprint(uid)
		}
		in = append(in,
			changeInput(fixture.UserRow(schemas.OpCreate, fmt.Sprintf("0/%X", 0x1000+i), uid, mangle(email), "", time.Unix(t0-day, 0))),
			stripeInput(fixture.Customer(fmt.Sprintf("evt_U%02d_0", i), "customer.created", t0, cus, mangle(email), nil, "")),
			stripeInput(fixture.CheckoutCompleted(fmt.Sprintf("evt_U%02d_1", i), t0, cs)),
			stripeInput(fixture.Subscription(fmt.Sprintf("evt_U%02d_2", i), "customer.subscription.created", t0, fixture.Sub{ID: sub, Customer: cus, Status: "active", Price: "price_pro_monthly", Product: "prod_pro", PeriodEnd: t0 + 30*day})),
			stripeInput(fixture.Invoice(fmt.Sprintf("evt_U%02d_3", i), "invoice.paid", t0, fixture.Inv{ID: inv, Customer: cus, Email: mangle(email), Sub: sub, Status: "paid", Reason: "subscription_create", Price: "price_pro_monthly", Product: "prod_pro", PeriodEnd: t0 + 30*day, Amount: 4900})),
			rawInput(fixture.KitEvent(fmt.Sprintf("kit-U%02d", i), "subscriber.created", time.Unix(t0+200, 0), int64(90000+i), " "+mangle(email), "active", time.Now())),
			rawInput(fixture.CircleMember(m, time.Now())),
		)
	}
	n := len(in)
	for i := 0; i < n; i++ {
		if r.Intn(3) == 0 {
			in = append(in, in[i])
		}
	}
	r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
	h.send(in...)
	o := h.waitFor("fifty active customers", 60*time.Second, func(o *outputs) bool {
		if len(o.live()) != 50 {
			return false
		}
		for id, i := range o.live() {
			if len(i.Stripe) != 1 || len(i.Kit) != 1 || len(i.Circle) != 1 || !o.entitlement[id].Access {
				return false
			}
		}
		return true
	})
	seen := map[string]string{}
	for id, i := range o.live() {
		if !strings.HasPrefix(id, "cus:u:") || len(i.Emails) != 1 || i.UserID == "" {
			t.Errorf("customer %s: %+v", id, i)
		}
		for _, k := range append(append(append([]string{"user:" + i.UserID}, i.Emails...), i.Stripe...), append(i.Kit, i.Circle...)...) {
			if other, dup := seen[k]; dup {
				t.Errorf("%s held by %s and %s", k, other, id)
			}
			seen[k] = id
		}
	}
	for _, m := range o.mismatch {
		if m.State == MismatchOpen && m.Kind == schemas.MismatchDuplicateRecords {
			t.Errorf("duplicate records finding: %+v", m)
		}
	}
}
