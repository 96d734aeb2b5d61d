// Package reconcile joins every source into one customer identity and one
// entitlement per customer, explains every change, and finds the places where
// Circle or Kit disagree with what the customer paid for.
//
// The logic is pure: decoders turn provider events and CDC changes into
// Facts (fact.go, stripe.go, kit.go, circle.go, cdc.go, sink.go); State
// (state.go) folds facts into customers — identity links in a union-find
// (identity.go), billing facts into an entitlement (entitlement.go), observed
// downstream state into findings (mismatch.go). Every fold is a join of sets
// and maxima, so the result depends only on the set of facts, never on their
// order or on how often one arrived. The Kafka loop around it lives in loop.go
// (consume, decode, write), outputs.go (what is written and when) and
// factlog.go (the fact log: rebuild at start, several instances).
package reconcile

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// ID names one identifier of a person, or of an object that belongs to one:
// "kind:value", e.g. "email:maria@example.org", "stripe:cus_123", "user:42".
type ID string

// Identifier kinds. The first five name a person; the others only carry
// links (a dispute names a charge, not a customer).
const (
	KindUser       = "user"        // the app's internal user id
	KindEmail      = "email"       // normalised email
	KindStripe     = "stripe"      // Stripe customer id
	KindCircle     = "circle"      // Circle community member id
	KindKit        = "kit"         // Kit subscriber id
	KindSession    = "session"     // chatbot session id
	KindCircleUser = "circle_user" // Circle's own user_id of a member
	KindCharge     = "charge"      // Stripe charge id
	KindPayment    = "pi"          // Stripe payment intent id
)

// MakeID returns kind:value, or "" when value is empty.
func MakeID(kind, value string) ID {
	if value == "" {
		return ""
	}
	return ID(kind + ":" + value)
}

// Kind returns the identifier's kind.
func (id ID) Kind() string {
	k, _, _ := strings.Cut(string(id), ":")
	return k
}

// Value returns the identifier without its kind.
func (id ID) Value() string {
	_, v, _ := strings.Cut(string(id), ":")
	return v
}

// Person reports whether the identifier names a person by itself.
func (id ID) Person() bool {
	switch id.Kind() {
	case KindUser, KindEmail, KindStripe, KindCircle, KindKit:
		return true
	}
	return false
}

// NormEmail normalises an email for joining: trimmed and lower-case. It
// returns "" for anything that is not shaped like an address, so display names
// and placeholders never become join keys.
func NormEmail(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || strings.ContainsAny(s, " \t\r\n<>,;\"") {
		return ""
	}
	return s
}

// Fact sources.
const (
	SourceStripe = "stripe"
	SourceKit    = "kit"
	SourceCircle = "circle"
	SourceApp    = "app"
	SourceSink   = "sink"
)

// Email claim ranks: when a customer's records disagree on the current email,
// the highest-ranked source wins, then the newest claim. The app's own user
// table is the founder's source of truth; Kit and Circle often keep an old
// address for a long time.
const (
	RankKit            = 1
	RankCircle         = 1
	RankStripe         = 2 // emails on checkout sessions, invoices, charges
	RankStripeCustomer = 3 // the Stripe customer object's own email
	RankApp            = 4
)

// EmailClaim says that record Of had Email as its current address at the
// fact's time.
type EmailClaim struct {
	Of    ID     `json:"of"`
	Email string `json:"email"`
	Rank  int    `json:"rank"`
}

// Fact is one provider event or row change reduced to what the reconciler
// uses. It is what the fact log (reconcile.seen) stores, so state can be
// rebuilt without the raw topics.
type Fact struct {
	// Key is the dedup key: the raw event's or change's identity across
	// re-deliveries.
	Key     string `json:"key"`
	Source  string `json:"source"`
	Type    string `json:"type"`
	EventID string `json:"event_id"`
	// At is the provider's own time: the order of facts.
	At time.Time `json:"at"`
	// Received is when ingest received the event (latency measurement only).
	Received time.Time `json:"received,omitzero"`
	// Links are identifiers this fact proves to belong to one person.
	Links []ID `json:"links"`
	// Email is a current-email claim; PrevEmail the address it replaced.
	Email     *EmailClaim `json:"email,omitempty"`
	PrevEmail string      `json:"prev_email,omitempty"`
	Billing   *Billing    `json:"billing,omitempty"`
	Observe   *Observe    `json:"observe,omitempty"`
}

// Billing objects.
const (
	ObjSubscription = "subscription"
	ObjInvoice      = "invoice"
	ObjCheckout     = "checkout"
	ObjCharge       = "charge"
	ObjDispute      = "dispute"
)

// Billing is the state of one Stripe object as one event showed it.
type Billing struct {
	Object string `json:"object"`
	ID     string `json:"id"`
	// Sub is the subscription the object belongs to ("" for one-off payments).
	Sub    string `json:"sub,omitempty"`
	Status string `json:"status,omitempty"`
	// Paid: the invoice or checkout was paid. Failed: an invoice payment failed.
	Paid   bool `json:"paid,omitempty"`
	Failed bool `json:"failed,omitempty"`
	// Reason is an invoice's billing_reason (subscription_create is a first payment).
	Reason   string `json:"reason,omitempty"`
	Mode     string `json:"mode,omitempty"` // checkout mode: payment or subscription
	Price    string `json:"price,omitempty"`
	Product  string `json:"product,omitempty"`
	PlanHint string `json:"plan_hint,omitempty"` // a plan, price or product named in metadata
	// PeriodEnd is the end of the paid period (unix seconds).
	PeriodEnd  int64  `json:"period_end,omitempty"`
	Amount     int64  `json:"amount,omitempty"`
	Refunded   int64  `json:"refunded,omitempty"`
	FullRefund bool   `json:"full_refund,omitempty"`
	Charge     string `json:"charge,omitempty"` // a dispute's charge
}

// Observe is what a downstream system was seen to hold.
type Observe struct {
	System string `json:"system"` // circle or kit
	// Record is the member or subscriber the observation is about.
	Record string `json:"record,omitempty"`
	State  string `json:"state,omitempty"`
	// Snapshot: Tags is the complete set of the record's member tags at the
	// fact's time (a Circle member object).
	Snapshot bool    `json:"snapshot,omitempty"`
	Tags     []int64 `json:"tags,omitempty"`
	// Holds are single observations: a tag or access group present or absent.
	Holds []Holding `json:"holds,omitempty"`
	// Customer and Email name the customer a sink acted for; the fact is
	// linked to that customer when it is applied.
	Customer string `json:"customer,omitempty"`
	Email    string `json:"email,omitempty"`
}

// Holding kinds.
const (
	HoldTag   = "tag"
	HoldGroup = "group"
)

// Holding is one tag or access group seen present or absent.
type Holding struct {
	Kind    string `json:"kind"`
	ID      int64  `json:"id,omitempty"`
	Name    string `json:"name,omitempty"`
	Present bool   `json:"present"`
}

// addLink appends id when it is not empty and not present yet.
func (f *Fact) addLink(id ID) {
	if id == "" {
		return
	}
	for _, l := range f.Links {
		if l == id {
			return
		}
	}
	f.Links = append(f.Links, id)
}

// addEmail links a normalised email and returns it ("" when raw is no address).
func (f *Fact) addEmail(raw string) string {
	e := NormEmail(raw)
	f.addLink(MakeID(KindEmail, e))
	return e
}

// hash16 is a short stable hash for ids derived from personal data.
func hash16(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}
