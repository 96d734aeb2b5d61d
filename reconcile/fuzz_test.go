package reconcile

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/launchready/launchready/reconcile/internal/fixture"
	"github.com/launchready/launchready/schemas"
)

// checkFact asserts what every decoded fact must satisfy, then applies it
// twice: the second time must be a duplicate.
func checkFact(t *testing.T, f *Fact) {
	t.Helper()
	if f == nil {
		return
	}
	if f.Key == "" || len(f.Links) == 0 {
		t.Fatalf("fact without key or links: %+v", f)
	}
	for _, l := range f.Links {
		if l == "" || l.Value() == "" || l.Kind() == "" {
			t.Fatalf("empty identifier in %v", f.Links)
		}
		if l.Kind() == KindEmail && NormEmail(l.Value()) != l.Value() {
			t.Fatalf("email link %q is not normalised", l)
		}
	}
	if f.Email != nil && NormEmail(f.Email.Email) != f.Email.Email {
		t.Fatalf("email claim %q is not normalised", f.Email.Email)
	}
	m, err := exampleMappingOnce()
	if err != nil {
		t.Fatal(err)
	}
	s := NewState(m, func() time.Time { return time.Unix(base, 0) })
	if res := s.Apply(f); res.Duplicate {
		t.Fatal("first application is a duplicate")
	}
	if res := s.Apply(f); !res.Duplicate {
		t.Fatal("second application is not a duplicate")
	}
	if _, err := json.Marshal(f); err != nil {
		t.Fatalf("fact does not encode for the fact log: %v", err)
	}
}

func FuzzDecodeStripe(f *testing.F) {
	for _, name := range []string{"stripe_checkout.session.completed.json", "stripe_customer.subscription.updated.json", "stripe_charge.refunded.json"} {
		f.Add(payload(f, name))
	}
	for _, e := range []fixture.Event{
		invoice("e1", "invoice.payment_failed", base, "in_1", "subscription_cycle"),
		fixture.Dispute("e2", "charge.dispute.created", base, "dp_1", "ch_1", "needs_response"),
		fixture.Subscription("e3", "customer.subscription.updated", base, fixture.Sub{ID: "sub_1", Customer: "cus_1", Status: "active", Price: "price_pro_monthly", Legacy: true}),
	} {
		f.Add(e.Body())
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		raw := &schemas.RawEvent{V: 1, Provider: "stripe", EventID: "evt_fuzz", Body: body}
		fact, err := DecodeStripe(raw)
		if err != nil {
			return
		}
		checkFact(t, fact)
	})
}

func FuzzDecodeKit(f *testing.F) {
	f.Add(kitEventBody(f, "kit_subscriber.created.json"))
	f.Add(payload(f, "kit_legacy_subscriber.subscriber_activate.json"))
	f.Add(payload(f, "kit_legacy_purchase.purchase_create.json"))
	f.Add([]byte(`{"id":"x","type":"subscriber.tag_add","data":{"subscriber":{"id":5,"email_address":"a@b.c"},"tag":{"id":"3100","name":"lead"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		raw := &schemas.RawEvent{V: 1, Provider: "kit", EventID: "fuzz", Body: body}
		fact, err := DecodeKit(raw)
		if err != nil {
			return
		}
		checkFact(t, fact)
	})
}

func FuzzDecodeCircle(f *testing.F) {
	f.Add(payload(f, "circle_community_member_search_response.json"))
	f.Add(payload(f, "circle_workflow_push.json"))
	f.Add([]byte(`{"member":{"id":"9","email":"X@Y.org","member_tags":[{"id":1}]},"event":"member.access_group_removed","access_group_id":1001}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		raw := &schemas.RawEvent{V: 1, Provider: "circle", EventID: "fuzz", Body: body}
		fact, err := DecodeCircle(raw)
		if err != nil {
			return
		}
		checkFact(t, fact)
	})
}

func FuzzDecodeChange(f *testing.F) {
	for _, c := range []schemas.Change{
		fixture.UserRow(schemas.OpUpdate, "0/10", 42, "New@example.org", "old@example.org", time.Unix(base, 0)),
		fixture.SessionRow("0/11", "chat_1", 42, time.Unix(base, 0)),
	} {
		b, _ := json.Marshal(c)
		f.Add(b)
	}
	s := DefaultSettings()
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeChange(b)
		if err != nil {
			return
		}
		checkFact(t, s.FactFromChange(c))
	})
}

// stripeRecords are raw lr.raw.stripe records as seeds.
func stripeRecords(t testing.TB) [][]byte {
	var out [][]byte
	for _, name := range []string{"stripe_checkout.session.completed.json", "stripe_customer.subscription.updated.json", "stripe_charge.refunded.json"} {
		raw := schemas.RawEvent{V: 1, Provider: "stripe", EventID: "evt_" + name, Type: "x", ObjectID: "cus_1",
			ProviderTime: time.Unix(base, 0).UTC(), ReceivedAt: time.Unix(base, 0).UTC(), Body: payload(t, name)}
		b, _ := json.Marshal(raw)
		out = append(out, b)
	}
	g := generate(t, 77)
	for _, in := range g.inputs {
		if in.topic == "raw.stripe" {
			out = append(out, in.value)
		}
	}
	return out
}

// FuzzFastStripeMatchesJSON holds the walker to encoding/json: for any
// input both accept or both refuse, and accepted records give the same fact.
func FuzzFastStripeMatchesJSON(f *testing.F) {
	for _, b := range stripeRecords(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"provider":"stripe","event_id":"e","body":{"id":"e","data":{"object":{"object":"invoice","customer":"c","status":"paid","lines":{"data":[{"price":{"id":"p"}},{"period":{"end":5}}]},"lines":{"data":[{"period":{"end":7}}]}}}}}`))
	f.Add([]byte(`{"V":1,"PROVIDER":"stripe","Event_ID":"e","body":{"ID":"e","Data":{"Object":{"Object":"customer","ID":"cus_1","Email":"A@B.C","customer":null}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		want, wantDup, wantErr := decodeRecordStd(schemas.ProviderStripe, b)
		got, gotDup, gotErr := decodeStripeRecord(b)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("encoding/json error %v, walker error %v on %q", wantErr, gotErr, b)
		}
		if wantErr == nil && (!reflect.DeepEqual(got, want) || gotDup != wantDup) {
			t.Fatalf("walker fact\n%+v\nencoding/json fact\n%+v\non %q", got, want, b)
		}
	})
}
