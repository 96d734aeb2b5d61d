package reconcile

import (
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/reconcile/internal/fixture"
	"github.com/launchready/launchready/schemas"
)

// base is a fixed provider time (2026-03-02T10:15:00Z) the tests count from.
const base = int64(1772446500)

const day = int64(86400)

func exampleMapping(t testing.TB) *mapping.Mapping {
	t.Helper()
	m, err := mapping.Example()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// world is a State with helpers to feed it provider events.
type world struct {
	t   testing.TB
	s   *State
	now time.Time
}

func newWorld(t testing.TB, now int64) *world {
	w := &world{t: t, now: time.Unix(now, 0).UTC()}
	w.s = NewState(exampleMapping(t), func() time.Time { return w.now })
	return w
}

func (w *world) apply(f *Fact) Result {
	w.t.Helper()
	if f == nil {
		w.t.Fatal("nil fact")
	}
	return w.s.Apply(f)
}

func stripeFact(t testing.TB, e fixture.Event) *Fact {
	t.Helper()
	raw := e.Raw(time.Unix(e.Created, 0).Add(time.Second))
	f, err := DecodeStripe(&raw)
	if err != nil {
		t.Fatalf("decode %s: %v", e.Type, err)
	}
	if f == nil {
		t.Fatalf("decode %s: no fact", e.Type)
	}
	return f
}

func kitFact(t testing.TB, raw schemas.RawEvent) *Fact {
	t.Helper()
	f, err := DecodeKit(&raw)
	if err != nil || f == nil {
		t.Fatalf("decode kit: %v %v", f, err)
	}
	return f
}

func circleFact(t testing.TB, raw schemas.RawEvent) *Fact {
	t.Helper()
	f, err := DecodeCircle(&raw)
	if err != nil || f == nil {
		t.Fatalf("decode circle: %v %v", f, err)
	}
	return f
}

func (w *world) stripe(e fixture.Event) Result { w.t.Helper(); return w.apply(stripeFact(w.t, e)) }

func (w *world) change(c schemas.Change) Result {
	w.t.Helper()
	return w.apply(DefaultSettings().FactFromChange(&c))
}

// customer returns the live customer holding an identifier.
func (w *world) customer(id ID) *Customer {
	w.t.Helper()
	root, ok := w.s.FindID(id)
	if !ok {
		w.t.Fatalf("no customer holds %s", id)
	}
	c := w.s.Customer(root)
	if c.ID() == "" {
		w.t.Fatalf("%s belongs to no person", id)
	}
	return c
}

// Short builders for a subscription history on customer cus_1 / sub_1.
func paidCheckout(evt string, at int64) fixture.Event {
	return fixture.CheckoutCompleted(evt, at, fixture.Checkout{ID: "cs_" + evt, Customer: "cus_1", Email: "Maria.Lopez@example.org", ClientRef: "42", Sub: "sub_1"})
}

func sub(evt, typ string, at int64, status string) fixture.Event {
	return fixture.Subscription(evt, typ, at, fixture.Sub{ID: "sub_1", Customer: "cus_1", Status: status, Price: "price_pro_monthly", Product: "prod_pro", PeriodEnd: at + 30*day})
}

func invoice(evt, typ string, at int64, inv, reason string) fixture.Event {
	status := "open"
	if typ == "invoice.paid" {
		status = "paid"
	}
	return fixture.Invoice(evt, typ, at, fixture.Inv{ID: inv, Customer: "cus_1", Email: "maria.lopez@example.org", Sub: "sub_1", Status: status,
		Reason: reason, Price: "price_pro_monthly", Product: "prod_pro", PeriodEnd: at + 30*day, Amount: 4900, Charge: "ch_" + inv})
}

func refund(evt string, at int64, charge string, amount, refunded int64) fixture.Event {
	return fixture.Charge(evt, "charge.refunded", at, fixture.Chg{ID: charge, Customer: "cus_1", Email: "maria.lopez@example.org", Amount: amount, Refunded: refunded})
}

var exampleMappingOnce = sync.OnceValues(mapping.Example)
