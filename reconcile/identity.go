package reconcile

import (
	"sort"
	"time"

	"github.com/launchready/launchready/schemas"
)

// Customer is one connected set of identifiers — one person — and every fact
// linked to it. Each field is a join (set union, minimum or maximum under a
// total order), so merging two customers, or applying facts in any order,
// gives the same customer.
type Customer struct {
	root ID
	// ids maps every identifier to the provider time it was first seen.
	ids map[ID]time.Time
	// claim is the winning current-email claim (rank, time, address).
	claim   *EmailClaim
	claimAt time.Time
	billing map[string]*Fact // billing facts by dedup key
	records map[string]*obsFact
	holds   map[string]*obsFact
	// count is the number of distinct facts applied: the record version.
	count int64
	// id is the canonical customer id ("" while no identifier names a person).
	id      string
	verdict Verdict
	// Caches: the identity record (valid unless idsChanged) and whether the
	// billing facts changed since the verdict was computed.
	ident          *schemas.Identity
	idsChanged     bool
	billingChanged bool
}

// obsFact is the newest observation of one downstream record or holding.
type obsFact struct {
	at      time.Time
	key     string
	system  string
	observe *Observe
	hold    Holding
}

func (o *obsFact) newerThan(b *obsFact) bool {
	if !o.at.Equal(b.at) {
		return o.at.After(b.at)
	}
	return o.key > b.key
}

func newCustomer(root ID) *Customer {
	return &Customer{root: root, ids: map[ID]time.Time{}, billing: map[string]*Fact{}, records: map[string]*obsFact{}, holds: map[string]*obsFact{}}
}

// ID returns the canonical customer id.
func (c *Customer) ID() string { return c.id }

// Count returns the number of distinct facts applied to the customer.
func (c *Customer) Count() int64 { return c.count }

// Has reports whether the identifier belongs to the customer.
func (c *Customer) Has(id ID) bool { _, ok := c.ids[id]; return ok }

// absorb merges o into c (o is discarded by the caller).
func (c *Customer) absorb(o *Customer) {
	for id, at := range o.ids {
		c.seeID(id, at)
	}
	if o.claim != nil {
		c.offerClaim(o.claim, o.claimAt)
	}
	for k, f := range o.billing {
		c.billing[k] = f
		c.billingChanged = true
	}
	for k, of := range o.records {
		c.offerObs(c.records, k, of)
	}
	for k, of := range o.holds {
		c.offerObs(c.holds, k, of)
	}
	c.count += o.count
}

func (c *Customer) seeID(id ID, at time.Time) {
	if prev, ok := c.ids[id]; !ok || at.Before(prev) {
		c.ids[id] = at
		c.idsChanged = true
	}
}

// offerClaim keeps the best claim: highest rank, then newest, then the
// greater address (any total order will do; this one is stable).
func (c *Customer) offerClaim(cl *EmailClaim, at time.Time) {
	if c.claim != nil {
		switch {
		case cl.Rank != c.claim.Rank:
			if cl.Rank < c.claim.Rank {
				return
			}
		case !at.Equal(c.claimAt):
			if at.Before(c.claimAt) {
				return
			}
		case cl.Email <= c.claim.Email:
			return
		}
	}
	cp := *cl
	c.claim, c.claimAt = &cp, at
	c.idsChanged = true
}

func (c *Customer) offerObs(m map[string]*obsFact, k string, of *obsFact) {
	if cur := m[k]; cur == nil || of.newerThan(cur) {
		m[k] = of
	}
}

// add folds one fact into the customer.
func (c *Customer) add(f *Fact) {
	for _, l := range f.Links {
		c.seeID(l, f.At)
	}
	if f.Email != nil && f.Email.Email != "" {
		c.offerClaim(f.Email, f.At)
	}
	if f.Billing != nil {
		c.billing[f.Key] = f
		c.billingChanged = true
	}
	if o := f.Observe; o != nil {
		if o.Record != "" && (o.Snapshot || o.State != "") {
			c.offerObs(c.records, o.System+"|"+o.Record, &obsFact{at: f.At, key: f.Key, system: o.System, observe: o})
		}
		for _, h := range o.Holds {
			c.offerObs(c.holds, holdKey(o.System, h), &obsFact{at: f.At, key: f.Key, system: o.System, hold: h})
		}
	}
	c.count++
}

func holdKey(system string, h Holding) string {
	if h.ID != 0 {
		return system + "|" + h.Kind + "|#" + itoa(h.ID)
	}
	return system + "|" + h.Kind + "|" + lower(h.Name)
}

// canonicalID derives the customer id from the identifiers alone, so the
// survivor of a merge never depends on arrival order:
//
//	cus:u:<user id>      the app's user id when known (the smallest, if two)
//	cus:e:<hash>         else a hash of the first-seen email (earliest provider time, then smallest)
//	cus:s:/k:/c:<id>     else the smallest Stripe, Kit or Circle id
//
// A customer first known by email becomes cus:u:… once an app user id links
// to it: the email-only id is then merged into the user's (a merge decision
// and a record pointing to the survivor).
func (c *Customer) canonicalID() string {
	var user, email, stripe, kit, circle string
	var emailAt time.Time
	for id, at := range c.ids {
		v := id.Value()
		switch id.Kind() {
		case KindUser:
			if user == "" || lessID(v, user) {
				user = v
			}
		case KindEmail:
			if email == "" || at.Before(emailAt) || (at.Equal(emailAt) && v < email) {
				email, emailAt = v, at
			}
		case KindStripe:
			if stripe == "" || lessID(v, stripe) {
				stripe = v
			}
		case KindKit:
			if kit == "" || lessID(v, kit) {
				kit = v
			}
		case KindCircle:
			if circle == "" || lessID(v, circle) {
				circle = v
			}
		}
	}
	switch {
	case user != "":
		return "cus:u:" + user
	case email != "":
		return "cus:e:" + hash16(email)
	case stripe != "":
		return "cus:s:" + stripe
	case kit != "":
		return "cus:k:" + kit
	case circle != "":
		return "cus:c:" + circle
	}
	return ""
}

// lessID orders ids, numbers by value.
func lessID(a, b string) bool {
	if digits(a) && digits(b) && len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// values returns the sorted values of the identifiers of one kind.
func (c *Customer) values(kind string) []string {
	var out []string
	for id := range c.ids {
		if id.Kind() == kind {
			out = append(out, id.Value())
		}
	}
	sort.Slice(out, func(i, j int) bool { return lessID(out[i], out[j]) })
	return out
}

// Email is the current email: the best claim, else the first-seen address.
func (c *Customer) Email() string {
	if c.claim != nil {
		return c.claim.Email
	}
	var email string
	var at time.Time
	for id, t := range c.ids {
		if id.Kind() == KindEmail && (email == "" || t.Before(at) || (t.Equal(at) && id.Value() < email)) {
			email, at = id.Value(), t
		}
	}
	return email
}

// Identity is the customer's identity record (without version and time,
// which the loop sets when it emits). Callers must not modify its slices.
func (c *Customer) Identity() schemas.Identity {
	if c.ident != nil && !c.idsChanged && c.ident.CustomerID == c.id {
		return *c.ident
	}
	id := c.identity()
	c.ident, c.idsChanged = &id, false
	return id
}

func (c *Customer) identity() schemas.Identity {
	users := c.values(KindUser)
	id := schemas.Identity{
		V: 1, CustomerID: c.id, Email: c.Email(), Emails: c.values(KindEmail),
		Stripe: c.values(KindStripe), Circle: c.values(KindCircle), Kit: c.values(KindKit), Sessions: c.values(KindSession),
	}
	if len(users) > 0 {
		id.UserID = users[0]
	}
	return id
}

// billingFacts returns the customer's billing facts.
func (c *Customer) billingFacts() []*Fact {
	out := make([]*Fact, 0, len(c.billing))
	for _, f := range c.billing {
		out = append(out, f)
	}
	return out
}

// sameIdentity compares identity records, ignoring version and time.
func sameIdentity(a, b schemas.Identity) bool {
	return a.CustomerID == b.CustomerID && a.UserID == b.UserID && a.Email == b.Email && a.MergedInto == b.MergedInto &&
		eqStrings(a.Emails, b.Emails) && eqStrings(a.Stripe, b.Stripe) && eqStrings(a.Circle, b.Circle) &&
		eqStrings(a.Kit, b.Kit) && eqStrings(a.Sessions, b.Sessions)
}

func eqStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
