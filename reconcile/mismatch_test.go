package reconcile

import (
	"sort"
	"strings"
	"testing"

	"github.com/launchready/launchready/reconcile/internal/fixture"
	"github.com/launchready/launchready/schemas"
)

func TestFindings(t *testing.T) {
	t.Parallel()
	paid := func(w *world) {
		w.stripe(paidCheckout("e1", base))
		w.stripe(sub("e2", "customer.subscription.created", base, "active"))
	}
	kit := func(w *world, subID int64, email string) {
		w.apply(kitFact(t, fixture.KitEvent("k"+email, "subscriber.created", at(base), subID, email, "active", at(base))))
	}
	member := func(w *world, tags ...int64) {
		w.apply(circleFact(t, fixture.CircleMember(fixture.Member{ID: 31337, Email: "maria.lopez@example.org", Updated: at(base + 60), Tags: tags}, at(base+60))))
	}
	sink := func(w *world, provider, action, target, status string) {
		sr := fixture.SinkResult("cus:u:42", "maria.lopez@example.org", provider, action, target, status, 3, at(base+300))
		w.apply(FactFromSink(&sr))
	}
	cases := []struct {
		name  string
		setup func(w *world)
		want  []string // kind/system
	}{
		{name: "paying customer missing in Circle and Kit", setup: paid,
			want: []string{"missing_in_system/circle", "missing_in_system/kit"}},
		{name: "paying customer with full access", setup: func(w *world) {
			paid(w)
			kit(w, 1, "maria.lopez@example.org")
			member(w, 2001)
			sink(w, "circle", "add_access_group", "1001", schemas.SinkNoop)
		}},
		{name: "paid but Circle lacks the plan tag", setup: func(w *world) {
			paid(w)
			kit(w, 1, "maria.lopez@example.org")
			member(w, 77)
		}, want: []string{"paid_no_circle_access/circle"}},
		{name: "paid but the access group add failed", setup: func(w *world) {
			paid(w)
			kit(w, 1, "maria.lopez@example.org")
			member(w, 2001)
			sink(w, "circle", "add_access_group", "1001", schemas.SinkError)
		}, want: []string{"paid_no_circle_access/circle"}},
		{name: "Circle access without a paid entitlement", setup: func(w *world) {
			w.stripe(fixture.Customer("e0", "customer.created", base, "cus_1", "maria.lopez@example.org", nil, "42"))
			member(w, 2001)
		}, want: []string{"circle_access_not_paid/circle"}},
		{name: "paid customer still tagged as a lead in Kit", setup: func(w *world) {
			paid(w)
			kit(w, 1, "maria.lopez@example.org")
			member(w, 2001)
			sink(w, "kit", "untag", "3100", schemas.SinkDryRun)
		}, want: []string{"paid_tagged_lead/kit"}},
		{name: "the lead tag removal closes the finding", setup: func(w *world) {
			paid(w)
			kit(w, 1, "maria.lopez@example.org")
			member(w, 2001)
			sink(w, "kit", "untag", "3100", schemas.SinkDryRun)
			sr := fixture.SinkResult("cus:u:42", "maria.lopez@example.org", "kit", "untag", "3100", schemas.SinkOK, 4, at(base+400))
			w.apply(FactFromSink(&sr))
		}},
		{name: "refunded customer still has the customer tag", setup: func(w *world) {
			paid(w)
			w.stripe(invoice("e3", "invoice.paid", base, "in_1", "subscription_create"))
			w.stripe(sub("e4", "customer.subscription.deleted", base+100, "canceled"))
			w.stripe(refund("e5", base+100, "ch_in_1", 4900, 4900))
			kit(w, 1, "maria.lopez@example.org")
			sink(w, "kit", "tag", "customer-pro", schemas.SinkNoop)
		}, want: []string{"revoked_still_customer_tagged/kit"}},
		{name: "two Kit subscribers differing only by email case", setup: func(w *world) {
			kit(w, 1, "Maria.Lopez@example.org")
			kit(w, 2, "maria.lopez@example.org")
		}, want: []string{"duplicate_records/kit"}},
		{name: "two Stripe customers with one email", setup: func(w *world) {
			w.stripe(fixture.Customer("e1", "customer.created", base, "cus_1", "maria.lopez@example.org", nil, ""))
			w.stripe(fixture.Customer("e2", "customer.created", base, "cus_2", "Maria.Lopez@example.org", nil, ""))
		}, want: []string{"duplicate_records/stripe"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, base+day)
			tc.setup(w)
			if w.s.Len() != 1 {
				t.Fatalf("%d customers", w.s.Len())
			}
			c := w.customer("email:maria.lopez@example.org")
			var got []string
			for _, f := range w.s.Findings(c) {
				got = append(got, f.Kind+"/"+f.System)
				if f.Detail == "" {
					t.Errorf("finding %s without detail", f.Kind)
				}
			}
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("findings %v, want %v (%+v)", got, tc.want, w.s.Findings(c))
			}
		})
	}
}
