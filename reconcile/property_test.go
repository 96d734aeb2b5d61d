package reconcile

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/reconcile/internal/fixture"
	"github.com/launchready/launchready/schemas"
)

// gen builds one random but plausible history of one or two people: app
// users, Stripe customers, checkouts, subscriptions through renewals, dunning,
// cancellation, refunds and chargebacks, Kit subscribers and Circle members
// with case-mangled emails, email changes, chat sessions, sink results, and
// sometimes a checkout that proves two records are one person.
type gen struct {
	t      testing.TB
	r      *rand.Rand
	seed   int64
	n      int
	facts  []*Fact
	inputs []input
	last   int64
}

// input is one record as it arrives on a reconciler input topic (relative name).
type input struct {
	topic, key string
	value      []byte
}

func (g *gen) record(topic, key string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		g.t.Fatal(err)
	}
	g.inputs = append(g.inputs, input{topic: topic, key: key, value: b})
}

type person struct {
	user   int64
	email  string
	cus    string
	kit    int64
	circle int64
}

func (g *gen) next(prefix string) string {
	g.n++
	return fmt.Sprintf("%s%d_%d", prefix, g.seed, g.n)
}

// later advances a clock; a fifth of the events share the previous second.
func (g *gen) later(t int64) int64 {
	if g.r.Intn(5) == 0 {
		return t
	}
	return t + 1 + g.r.Int63n(2*day)
}

func (g *gen) seen(t int64) {
	if t > g.last {
		g.last = t
	}
}

func (g *gen) stripe(e fixture.Event) {
	g.seen(e.Created)
	raw := e.Raw(time.Unix(e.Created+1+g.r.Int63n(30), 0))
	f, err := DecodeStripe(&raw)
	if err != nil || f == nil {
		g.t.Fatalf("decode %s: %v", e.Type, err)
	}
	g.facts = append(g.facts, f)
	g.record("raw.stripe", raw.ObjectID, raw)
}

func (g *gen) raw(raw schemas.RawEvent, decode func(*schemas.RawEvent) (*Fact, error)) {
	g.seen(raw.ProviderTime.Unix())
	f, err := decode(&raw)
	if err != nil || f == nil {
		g.t.Fatalf("decode %s: %v", raw.Type, err)
	}
	g.facts = append(g.facts, f)
	g.record("raw."+raw.Provider, raw.ObjectID, raw)
}

func (g *gen) change(c schemas.Change) {
	g.seen(c.Source.CommitTime.Unix())
	f := DefaultSettings().FactFromChange(&c)
	if f == nil {
		g.t.Fatalf("no fact from %+v", c)
	}
	g.facts = append(g.facts, f)
	key, _ := json.Marshal(c.Key)
	g.record(schemas.CDCTopic(c.Schema, c.Table), string(key), c)
}

// mangle returns the email with a random mix of case and surrounding space.
func (g *gen) mangle(email string) string {
	b := []byte(email)
	for i := range b {
		if g.r.Intn(3) == 0 && b[i] >= 'a' && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	if g.r.Intn(4) == 0 {
		return " " + string(b) + " "
	}
	return string(b)
}

var prices = []struct{ price, product string }{
	{"price_pro_monthly", "prod_pro"}, {"price_pro_yearly", "prod_pro"}, {"price_starter_monthly", "prod_starter"}, {"price_other", "prod_other"},
}

func generate(t testing.TB, seed int64) *gen {
	g := &gen{t: t, r: rand.New(rand.NewSource(seed)), seed: seed}
	r := g.r
	people := []*person{{}}
	if r.Intn(3) == 0 {
		people = append(people, &person{})
	}
	for i, p := range people {
		p.email = fmt.Sprintf("p%d.%d@example.org", seed, i)
		p.cus = fmt.Sprintf("cus_%d_%d", seed, i)
		if r.Intn(10) < 7 {
			p.user = seed*10 + int64(i) + 1
		}
		t0 := base + r.Int63n(day)
		g.identity(p, t0)
		g.billing(p, t0)
	}
	if len(people) == 2 && r.Intn(2) == 0 {
		// Proof that the two are one person: a checkout of the first's
		// Stripe customer naming the second's app user, or the first's
		// customer switching to the second's email.
		a, b := people[0], people[1]
		at := base + r.Int63n(20*day)
		if b.user != 0 && r.Intn(2) == 0 {
			g.stripe(fixture.CheckoutCompleted(g.next("evt_"), at, fixture.Checkout{ID: g.next("cs_"), Customer: a.cus, ClientRef: fmt.Sprint(b.user), Mode: "setup", PaymentStatus: "no_payment_required"}))
		} else {
			prev := a.email
			g.stripe(fixture.Customer(g.next("evt_"), "customer.updated", at, a.cus, g.mangle(b.email), &prev, ""))
		}
	}
	if r.Intn(3) == 0 {
		// A sink acts on an entitlement record: its customer id and email
		// are that record's, i.e. the id of the customer holding the email.
		// (Its action id starts with the customer id, so results for two
		// people never share a dedup key.)
		p := people[0]
		customer := ""
		s := play(exampleMapping(t), time.Unix(g.last, 0), g.facts, true)
		if root, ok := s.FindID(MakeID(KindEmail, p.email)); ok {
			customer = s.Customer(root).ID()
		}
		if customer == "" {
			return g
		}
		provider, action, target := "kit", "untag", "3100"
		switch r.Intn(3) {
		case 1:
			provider, action, target = "circle", "add_access_group", "1001"
		case 2:
			provider, action, target = "kit", "tag", "customer-pro"
		}
		status := []string{schemas.SinkOK, schemas.SinkNoop, schemas.SinkDryRun, schemas.SinkError}[r.Intn(4)]
		sr := fixture.SinkResult(customer, p.email, provider, action, target, status, int64(r.Intn(5)+1), time.Unix(base+r.Int63n(40*day), 0))
		f := FactFromSink(&sr)
		g.seen(sr.At.Unix())
		g.facts = append(g.facts, f)
		g.record("sink.results", sr.CustomerID, sr)
	}
	return g
}

func genHistory(t testing.TB, seed int64) (facts []*Fact, now time.Time) {
	g := generate(t, seed)
	return g.facts, time.Unix(g.last+g.r.Int63n(5*day), 0).UTC()
}

func (g *gen) identity(p *person, t int64) {
	r := g.r
	if p.user != 0 && r.Intn(10) < 7 {
		g.change(fixture.UserRow(schemas.OpCreate, g.next("0/"), p.user, g.mangle(p.email), "", time.Unix(t, 0)))
	}
	created := g.later(t)
	if r.Intn(2) == 0 {
		g.stripe(fixture.Customer(g.next("evt_"), "customer.created", created, p.cus, g.mangle(p.email), nil, ""))
	}
	if r.Intn(10) < 6 {
		p.kit = g.seed*100 + 1
		g.raw(fixture.KitEvent(g.next("kit-"), "subscriber.created", time.Unix(g.later(t), 0), p.kit, g.mangle(p.email), "active", time.Unix(t+5, 0)), DecodeKit)
		if r.Intn(10) == 0 {
			g.raw(fixture.KitEvent(g.next("kit-"), "subscriber.created", time.Unix(g.later(t), 0), p.kit+1, strings.ToUpper(p.email), "active", time.Unix(t+5, 0)), DecodeKit)
		}
	}
	if r.Intn(2) == 0 {
		p.circle = g.seed*100 + 50
		m := fixture.Member{ID: p.circle, UserID: g.seed*100 + 60, Email: g.mangle(p.email), Updated: time.Unix(g.later(t), 0)}
		if p.user != 0 && r.Intn(2) == 0 {
			m.SSO = fmt.Sprint(p.user)
		}
		for _, tag := range []int64{2001, 2002, 77} {
			if r.Intn(3) == 0 {
				m.Tags = append(m.Tags, tag)
			}
		}
		g.raw(fixture.CircleMember(m, m.Updated.Add(time.Second)), DecodeCircle)
		if r.Intn(3) == 0 {
			m.Updated = m.Updated.Add(time.Duration(r.Intn(3)) * 24 * time.Hour)
			m.Tags = nil
			g.raw(fixture.CircleMember(m, m.Updated.Add(time.Second)), DecodeCircle)
		}
	}
	if r.Intn(10) == 0 {
		g.stripe(fixture.Customer(g.next("evt_"), "customer.created", g.later(t), p.cus+"_dup", g.mangle(p.email), nil, ""))
	}
	if r.Intn(5) == 0 {
		old, nu := p.email, "new."+p.email
		at := g.later(t + day)
		if r.Intn(3) == 0 {
			at = created // created and updated within one second: two claims tie on time
		}
		if r.Intn(2) == 0 {
			g.stripe(fixture.Customer(g.next("evt_"), "customer.updated", at, p.cus, g.mangle(nu), &old, ""))
		}
		if p.user != 0 && r.Intn(2) == 0 {
			g.change(fixture.UserRow(schemas.OpUpdate, g.next("0/"), p.user, nu, old, time.Unix(at, 0)))
		}
	}
	if p.user != 0 && r.Intn(3) == 0 {
		g.change(fixture.SessionRow(g.next("0/"), g.next("chat_"), p.user, time.Unix(g.later(t), 0)))
	}
}

func (g *gen) billing(p *person, t int64) {
	r := g.r
	pr := prices[r.Intn(len(prices))]
	legacy := r.Intn(5) == 0
	if r.Intn(10) == 0 {
		at := g.later(t)
		cs := fixture.Checkout{ID: g.next("cs_"), Customer: p.cus, Email: g.mangle(p.email), Mode: "payment", Metadata: map[string]any{"price": pr.price}, PaymentIntent: g.next("pi_")}
		g.stripe(fixture.CheckoutCompleted(g.next("evt_"), at, cs))
		if r.Intn(3) == 0 {
			ch := g.next("ch_")
			g.stripe(fixture.Charge(g.next("evt_"), "charge.succeeded", at, fixture.Chg{ID: ch, Customer: p.cus, PaymentIntent: cs.PaymentIntent, Amount: 4900}))
			g.stripe(fixture.Charge(g.next("evt_"), "charge.refunded", g.later(at), fixture.Chg{ID: ch, Customer: p.cus, Amount: 4900, Refunded: 4900}))
		}
		return
	}
	subID := g.next("sub_")
	subEv := func(typ string, at int64, status string) {
		g.stripe(fixture.Subscription(g.next("evt_"), typ, at, fixture.Sub{ID: subID, Customer: p.cus, Status: status, Price: pr.price, Product: pr.product, PeriodEnd: at + 30*day, Legacy: legacy}))
	}
	var charges []string
	inv := func(typ string, at int64, id, reason string) {
		status := "open"
		if typ == "invoice.paid" {
			status = "paid"
		}
		ch := "ch_" + id
		charges = append(charges, ch)
		g.stripe(fixture.Invoice(g.next("evt_"), typ, at, fixture.Inv{ID: id, Customer: p.cus, Email: g.mangle(p.email), Sub: subID, Status: status, Reason: reason,
			Price: pr.price, Product: pr.product, PeriodEnd: at + 30*day, Amount: 4900, Charge: ch, Legacy: legacy}))
	}
	at := g.later(t)
	if r.Intn(10) < 6 {
		cs := fixture.Checkout{ID: g.next("cs_"), Customer: p.cus, Email: g.mangle(p.email), Sub: subID}
		if p.user != 0 && r.Intn(5) < 4 {
			cs.ClientRef = fmt.Sprint(p.user)
		}
		if r.Intn(10) == 0 {
			cs.PaymentStatus = "unpaid"
		}
		g.stripe(fixture.CheckoutCompleted(g.next("evt_"), at, cs))
	}
	first := g.next("in_")
	if r.Intn(5) == 0 {
		subEv("customer.subscription.created", at, "incomplete")
		inv("invoice.payment_failed", at, first, "subscription_create")
		switch r.Intn(3) {
		case 0:
			at = g.later(at)
			inv("invoice.paid", at, first, "subscription_create")
			subEv("customer.subscription.updated", at, "active")
		case 1:
			subEv("customer.subscription.updated", g.later(at+day), "incomplete_expired")
			return
		default:
			return
		}
	} else {
		subEv("customer.subscription.created", at, "active")
		inv("invoice.paid", at, first, "subscription_create")
	}
	renewals := r.Intn(4)
	for i := 0; i < renewals; i++ {
		at += 30 * day
		id := g.next("in_")
		if r.Intn(10) < 7 {
			inv("invoice.paid", at, id, "subscription_cycle")
			if r.Intn(2) == 0 {
				subEv("customer.subscription.updated", at, "active")
			}
			continue
		}
		inv("invoice.payment_failed", at, id, "subscription_cycle")
		if r.Intn(10) < 7 {
			subEv("customer.subscription.updated", at, "past_due")
		}
		switch r.Intn(4) {
		case 0, 1:
			at = g.later(at)
			inv("invoice.paid", at, id, "subscription_cycle")
			subEv("customer.subscription.updated", at, "active")
		case 2:
			at = g.later(at + day)
			subEv("customer.subscription.updated", at, "unpaid")
			i = renewals
		case 3:
			at = g.later(at + 2*day)
			subEv("customer.subscription.deleted", at, "canceled")
			return
		}
	}
	if r.Intn(5) == 0 {
		at = g.later(at)
		subEv("customer.subscription.deleted", at, "canceled")
	}
	if len(charges) > 0 && r.Intn(6) == 0 {
		ch := charges[r.Intn(len(charges))]
		refunded := int64(4900)
		if r.Intn(3) == 0 {
			refunded = 1000
		}
		g.stripe(fixture.Charge(g.next("evt_"), "charge.refunded", g.later(at), fixture.Chg{ID: ch, Customer: p.cus, Email: g.mangle(p.email), Amount: 4900, Refunded: refunded}))
	}
	if len(charges) > 0 && r.Intn(8) == 0 {
		ch, dp := charges[r.Intn(len(charges))], g.next("dp_")
		opened := g.later(at)
		g.stripe(fixture.Dispute(g.next("evt_"), "charge.dispute.created", opened, dp, ch, "needs_response"))
		if r.Intn(10) < 7 {
			g.stripe(fixture.Dispute(g.next("evt_"), "charge.dispute.closed", g.later(opened+day), dp, ch, []string{"won", "lost"}[r.Intn(2)]))
		}
	}
	if r.Intn(10) == 0 {
		// Subscribes again after all that.
		subID = g.next("sub_")
		at = g.later(at + 10*day)
		subEv("customer.subscription.created", at, "active")
		inv("invoice.paid", at, g.next("in_"), "subscription_create")
	}
}

// custSnap is everything order must not change about one customer.
type custSnap struct {
	Identity    schemas.Identity
	Entitlement schemas.Entitlement
	Findings    []Finding
	Count       int64
}

func snapshot(s *State) map[string]custSnap {
	out := map[string]custSnap{}
	for _, root := range s.Roots() {
		c := s.Customer(root)
		e := c.Entitlement()
		e.IngestedAt = time.Time{} // which copy of a duplicate came first
		fs := s.Findings(c)
		sort.Slice(fs, func(i, j int) bool { return fs[i].Kind+fs[i].System < fs[j].Kind+fs[j].System })
		out[c.ID()] = custSnap{Identity: c.Identity(), Entitlement: e, Findings: fs, Count: c.Count()}
	}
	return out
}

// play applies copies of facts to a fresh state.
func play(m *mapping.Mapping, now time.Time, facts []*Fact, quiet bool) *State {
	s := NewState(m, func() time.Time { return now })
	s.SetQuiet(quiet)
	for _, f := range facts {
		cp := *f
		cp.Links = append([]ID(nil), f.Links...)
		s.Apply(&cp)
	}
	s.SetQuiet(false)
	return s
}

// TestPropertyOrderAndDuplicatesDoNotMatter: any permutation and any
// duplication of a history ends in the same identities, entitlements (with
// the same versions) and findings; replaying the history again changes
// nothing; rebuilding quietly (as from the fact log) gives the same state.
func TestPropertyOrderAndDuplicatesDoNotMatter(t *testing.T) {
	t.Parallel()
	histories, perms := 2000, 3
	if testing.Short() {
		histories = 1000
	}
	m := exampleMapping(t)
	statuses := map[string]int{}
	merges, events := 0, 0
	for seed := int64(1); seed <= int64(histories); seed++ {
		facts, now := genHistory(t, seed)
		events += len(facts)
		ref := play(m, now, facts, false)
		want := snapshot(ref)
		for _, c := range want {
			statuses[c.Entitlement.Status]++
		}
		if len(ref.merged) > 0 {
			merges++
		}
		r := rand.New(rand.NewSource(seed * 7919))
		for p := 0; p < perms; p++ {
			var seq []*Fact
			for _, f := range facts {
				seq = append(seq, f)
				for k := r.Intn(4); k == 0 && len(seq) < 4*len(facts); k = r.Intn(3) {
					dup := *f
					dup.Received = dup.Received.Add(time.Duration(r.Intn(3600)) * time.Second)
					seq = append(seq, &dup)
				}
			}
			r.Shuffle(len(seq), func(i, j int) { seq[i], seq[j] = seq[j], seq[i] })
			quiet := p == perms-1
			got := play(m, now, seq, quiet)
			if g := snapshot(got); !reflect.DeepEqual(g, want) {
				t.Fatalf("history %d, permutation %d (quiet %v): state differs\n got: %s\nwant: %s", seed, p, quiet, dump(g), dump(want))
			}
			// Replaying everything again: every fact is a duplicate.
			for _, f := range seq {
				cp := *f
				cp.Links = append([]ID(nil), f.Links...)
				if res := got.Apply(&cp); !res.Duplicate && !res.Ignored {
					t.Fatalf("history %d: replayed fact %s was applied again", seed, f.Key)
				}
			}
			if g := snapshot(got); !reflect.DeepEqual(g, want) {
				t.Fatalf("history %d: a replay changed the state", seed)
			}
		}
	}
	// The generator must reach every status and merge, or the property
	// proves less than it claims.
	for _, st := range []string{schemas.StatusNone, schemas.StatusActive, schemas.StatusPastDue, schemas.StatusCanceled, schemas.StatusRefunded, schemas.StatusDisputed} {
		if statuses[st] == 0 {
			t.Errorf("no generated history ends %s: %v", st, statuses)
		}
	}
	if merges == 0 {
		t.Error("no generated history merges two customers")
	}
	t.Logf("%d histories, %d events, %d permutations with duplicates each; statuses %v; %d with merges", histories, events, perms, statuses, merges)
}

func dump(m map[string]custSnap) string {
	var b strings.Builder
	for _, k := range sortedKeys(m) {
		c := m[k]
		fmt.Fprintf(&b, "\n  %s count=%d identity=%+v\n    entitlement=%+v\n    findings=%+v", k, c.Count, c.Identity, c.Entitlement, c.Findings)
	}
	return b.String()
}

// TestLoopDecodeMatchesFacts feeds a shuffled, duplicated load through the
// loop's decoder (records as they sit in Kafka) and checks it ends where the
// facts decoded directly end.
func TestLoopDecodeMatchesFacts(t *testing.T) {
	t.Parallel()
	facts, in := load(t, 150, 400000)
	want := snapshot(play(exampleMapping(t), time.Unix(base+400*day, 0), facts, false))
	cfg := &config.Config{TopicPrefix: "lr."}
	r := &Reconciler{cfg: cfg, set: DefaultSettings(), t: topicNames{stripe: cfg.Topic("raw.stripe"), kit: cfg.Topic("raw.kit"),
		circle: cfg.Topic("raw.circle"), sinks: cfg.Topic("sink.results"), cdc: map[string]bool{}}}
	for _, tp := range DefaultSettings().CDCTopics() {
		r.t.cdc[cfg.Topic(tp)] = true
	}
	s := NewState(exampleMapping(t), func() time.Time { return time.Unix(base+400*day, 0) })
	for _, x := range in {
		m := kafka.Message{Topic: cfg.Topic(x.topic), Key: []byte(x.key), Value: x.value}
		it := r.decode(&m)
		if it.err != nil || it.fact == nil {
			t.Fatalf("%s: %v", x.topic, it.err)
		}
		s.Apply(it.fact)
	}
	if got := snapshot(s); !reflect.DeepEqual(got, want) {
		t.Fatalf("state through the loop's decoder differs:\n got: %s\nwant: %s", dump(got), dump(want))
	}
}
