package reconcile

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/schemas"
)

// State is every customer, as a union-find over identifiers. It is not safe
// for concurrent use; the loop serialises access.
type State struct {
	m   *mapping.Mapping
	now func() time.Time

	parent map[ID]ID
	comps  map[ID]*Customer // by root identifier
	// seen maps each applied dedup key to one identifier of its fact.
	seen map[string]ID
	// live maps each current customer id to its root; merged maps a customer
	// id that lost a merge to the id it went into.
	live   map[string]ID
	merged map[string]string
	// quiet skips verdicts and decisions while state is rebuilt from the
	// fact log; Refresh computes the verdicts afterwards.
	quiet bool
}

// NewState returns an empty state. now ends grace periods; tests fix it.
func NewState(m *mapping.Mapping, now func() time.Time) *State {
	if now == nil {
		now = time.Now
	}
	return &State{m: m, now: now, parent: map[ID]ID{}, comps: map[ID]*Customer{}, seen: map[string]ID{}, live: map[string]ID{}, merged: map[string]string{}}
}

// Result is what applying one fact did.
type Result struct {
	// Duplicate: the fact's key was applied before; nothing changed.
	Duplicate bool
	// Ignored: the fact names nobody.
	Ignored bool
	// Root is the customer's root identifier after the fact.
	Root ID
	// CustomerID is the customer's id ("" while the fact's identifiers name
	// no person yet, e.g. a chargeback whose charge is not linked yet).
	CustomerID string
	Count      int64
	// Merged lists customer ids that lost a merge to CustomerID.
	Merged    []string
	Decisions []schemas.Decision
}

// Seen reports whether a dedup key was applied.
func (s *State) Seen(key string) bool { _, ok := s.seen[key]; return ok }

// CustomerOfKey returns the customer id a dedup key's fact belongs to.
func (s *State) CustomerOfKey(key string) string {
	id, ok := s.seen[key]
	if !ok {
		return ""
	}
	return s.comps[s.find(id)].id
}

func (s *State) find(id ID) ID {
	root := id
	for {
		p, ok := s.parent[root]
		if !ok || p == root {
			break
		}
		root = p
	}
	for id != root {
		next := s.parent[id]
		s.parent[id] = root
		id = next
	}
	return root
}

// Customer returns the customer rooted at root.
func (s *State) Customer(root ID) *Customer { return s.comps[s.find(root)] }

// Lookup returns the root of a customer id, following merges.
func (s *State) Lookup(customerID string) (ID, bool) {
	for i := 0; i < 64; i++ {
		if root, ok := s.live[customerID]; ok {
			return s.find(root), true
		}
		next, ok := s.merged[customerID]
		if !ok {
			return "", false
		}
		customerID = next
	}
	return "", false
}

// Resolve returns the live customer id a (possibly merged) id now lives in.
func (s *State) Resolve(customerID string) string {
	if root, ok := s.Lookup(customerID); ok {
		return s.comps[root].id
	}
	return ""
}

// Roots returns the roots of every customer that names a person, sorted by id.
func (s *State) Roots() []ID {
	out := make([]ID, 0, len(s.live))
	for _, id := range sortedKeys(s.live) {
		out = append(out, s.live[id])
	}
	return out
}

// Len returns the number of live customers.
func (s *State) Len() int { return len(s.live) }

// FindID returns the root of the customer holding an identifier.
func (s *State) FindID(id ID) (ID, bool) {
	if _, ok := s.parent[id]; !ok {
		return "", false
	}
	return s.find(id), true
}

// Apply folds one fact into the state and explains what changed. Applying a
// fact whose key was applied before changes nothing.
func (s *State) Apply(f *Fact) Result {
	if f == nil || f.Key == "" {
		return Result{Ignored: true}
	}
	if anchor, ok := s.seen[f.Key]; ok {
		root := s.find(anchor)
		c := s.comps[root]
		return Result{Duplicate: true, Root: root, CustomerID: c.id, Count: c.count}
	}
	if len(f.Links) == 0 && f.Observe != nil {
		// A sink result belongs to the customer the sink acted for: link it
		// through one of that customer's identifiers (not the email it
		// carried, which may be stale), or through the email when the
		// customer is unknown. The resolved link is stored with the fact, so
		// a replay of the fact log lands it on the same customer.
		o := f.Observe
		if root, ok := s.Lookup(o.Customer); ok && o.Customer != "" {
			f.Links = []ID{s.comps[root].anchor()}
		} else if e := NormEmail(o.Email); e != "" {
			f.Links = []ID{MakeID(KindEmail, e)}
		}
		if len(f.Links) > 0 && o.Record != "" && len(o.Holds) == 0 {
			kind := KindKit
			if o.System == SourceCircle {
				kind = KindCircle
			}
			f.addLink(MakeID(kind, o.Record))
		}
	}
	if len(f.Links) == 0 {
		return Result{Ignored: true}
	}

	// Before: the customers the fact touches.
	type before struct {
		id       string
		identity schemas.Identity
		verdict  Verdict
	}
	var befores []before
	newIDs := map[ID]bool{}
	for _, l := range f.Links {
		if _, ok := s.parent[l]; !ok {
			newIDs[l] = true
			continue
		}
		c := s.comps[s.find(l)]
		if c.id == "" {
			continue
		}
		dup := false
		for _, b := range befores {
			dup = dup || b.id == c.id
		}
		if !dup {
			b := before{id: c.id}
			if !s.quiet {
				b.identity, b.verdict = c.Identity(), c.verdict
			}
			befores = append(befores, b)
		}
	}

	root := s.union(f.Links, f.At)
	c := s.comps[root]
	c.add(f)
	s.seen[f.Key] = f.Links[0]
	res := Result{Root: root, Count: c.count}

	newID := c.id
	if c.idsChanged || len(befores) != 1 {
		newID = c.canonicalID()
	}
	for _, b := range befores {
		delete(s.live, b.id)
	}
	if c.id != "" && c.id != newID {
		delete(s.live, c.id)
	}
	c.id = newID
	if newID == "" {
		return res
	}
	s.live[newID] = root
	delete(s.merged, newID)
	res.CustomerID = newID
	if s.quiet {
		for _, b := range befores {
			if b.id != newID {
				s.merged[b.id] = newID
				res.Merged = append(res.Merged, b.id)
			}
		}
		return res
	}
	// The verdict depends on billing facts alone (and the clock, which the
	// loop's grace sweep follows).
	known := false
	for _, b := range befores {
		known = known || b.id == newID
	}
	if c.billingChanged || !known {
		c.verdict = Evaluate(c.billingFacts(), s.m, s.now())
		c.billingChanged = false
	}

	var prev *before
	var prevIDs []string
	for i, b := range befores {
		prevIDs = append(prevIDs, b.id)
		if b.id == newID {
			prev = &befores[i]
		} else {
			s.merged[b.id] = newID
			res.Merged = append(res.Merged, b.id)
		}
	}
	after := c.Identity()
	var was any // the identity before, for decisions (nil for a new customer)
	if prev != nil {
		was = idSummary(prev.identity)
	}
	d := decider{s: s, f: f, customer: newID}
	switch {
	case len(res.Merged) > 0:
		sort.Strings(prevIDs)
		d.add(schemas.DecisionMerge, s.mergeRule(f, res.Merged, newID), map[string]any{"customer_ids": prevIDs}, idSummary(after), false)
	case prev == nil:
		d.add(schemas.DecisionLink, fmt.Sprintf("%s: new customer from %s", f.Type, joinIDs(personIDs(f.Links))), nil, idSummary(after), false)
	case len(personIDs(keysOf(newIDs))) > 0:
		d.add(schemas.DecisionLink, fmt.Sprintf("%s: linked %s", f.Type, joinIDs(personIDs(keysOf(newIDs)))), was, idSummary(after), false)
	}
	switch {
	case prev != nil && prev.identity.Email != "" && prev.identity.Email != after.Email:
		d.add(schemas.DecisionEmailChange, fmt.Sprintf("%s: current email %s → %s (the link moves, the customer stays)", f.Type, prev.identity.Email, after.Email),
			was, idSummary(after), false)
	case f.PrevEmail != "" && f.Email != nil:
		d.add(schemas.DecisionEmailChange, fmt.Sprintf("%s: %s changed email %s → %s; the customer's current email is %s", f.Type, f.Email.Of, f.PrevEmail, f.Email.Email, after.Email),
			was, idSummary(after), false)
	}
	old := Verdict{Status: schemas.StatusNone}
	if prev != nil {
		old = prev.verdict
	}
	if !old.same(c.verdict) {
		d.add(schemas.DecisionEntitlement, c.verdict.Rule, entSummaryOf(old), entSummaryOf(c.verdict), c.verdict.Flagged)
	}
	res.Decisions = d.out
	return res
}

// union joins every identifier into one customer and returns its root.
func (s *State) union(links []ID, at time.Time) ID {
	var root ID
	for _, l := range links {
		if _, ok := s.parent[l]; !ok {
			s.parent[l] = l
			c := newCustomer(l)
			c.seeID(l, at)
			s.comps[l] = c
		}
		r := s.find(l)
		if root == "" {
			root = r
			continue
		}
		if r == root {
			continue
		}
		a, b := s.comps[root], s.comps[r]
		if len(b.ids) > len(a.ids) {
			a, b = b, a
		}
		a.absorb(b)
		s.parent[b.root] = a.root
		delete(s.comps, b.root)
		if b.id != "" && b.id != a.id {
			// b's id is re-derived by the caller; drop it from live now.
			delete(s.live, b.id)
		}
		root = a.root
	}
	return root
}

// anchor is one stable identifier of the customer.
func (c *Customer) anchor() ID {
	best := c.root
	for id := range c.ids {
		if id.Person() && (!best.Person() || id < best) {
			best = id
		}
	}
	return best
}

func (s *State) mergeRule(f *Fact, losers []string, survivor string) string {
	why := "the earliest email wins"
	switch {
	case strings.HasPrefix(survivor, "cus:u:"):
		why = "the app user id wins"
	case !strings.HasPrefix(survivor, "cus:e:"):
		why = "the smallest provider id wins"
	}
	sort.Strings(losers)
	return fmt.Sprintf("%s: %s proven one person; %s merged into %s (%s)", f.Type, joinIDs(personIDs(f.Links)), strings.Join(losers, ", "), survivor, why)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func lower(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// SetQuiet switches verdicts and decisions off (true) while state is
// rebuilt; switching them back on recomputes every verdict.
func (s *State) SetQuiet(q bool) {
	s.quiet = q
	if q {
		return
	}
	now := s.now()
	for _, root := range s.live {
		c := s.comps[s.find(root)]
		c.verdict = Evaluate(c.billingFacts(), s.m, now)
		c.billingChanged = false
	}
}

// Entitlement is the customer's entitlement record (without version and
// update time, which the loop sets when it emits).
func (c *Customer) Entitlement() schemas.Entitlement {
	v := c.verdict
	e := schemas.Entitlement{
		V: schemas.EntitlementVersion, CustomerID: c.id, Email: c.Email(), Plan: v.Plan, Status: v.Status, Access: v.Access,
		CurrentPeriodEnd: v.PeriodEnd, GraceUntil: v.GraceUntil, Flagged: v.Flagged, FlagReason: v.FlagReason,
		SourceEventIDs: v.Deciding, LastEventAt: v.LastEventAt, IngestedAt: v.Received,
		CircleMemberIDs: c.values(KindCircle), KitSubscriberIDs: c.values(KindKit),
	}
	if e.Status == "" {
		e.Status = schemas.StatusNone
	}
	if e.SourceEventIDs == nil {
		e.SourceEventIDs = []string{}
	}
	if users := c.values(KindUser); len(users) > 0 {
		e.UserID = users[0]
	}
	return e
}

// Verdict returns the customer's current verdict.
func (c *Customer) Verdict() Verdict { return c.verdict }

// Findings returns the customer's open mismatches.
func (s *State) Findings(c *Customer) []Finding { return Findings(c, c.verdict, s.m) }

// Reevaluate recomputes a customer's verdict at the current time (grace
// periods end without an event) and returns the previous one.
func (s *State) Reevaluate(root ID) (old Verdict, c *Customer) {
	c = s.comps[s.find(root)]
	old = c.verdict
	if c.id != "" {
		c.verdict = Evaluate(c.billingFacts(), s.m, s.now())
	}
	return old, c
}

// sameEntitlement compares entitlement records, ignoring version, update
// time and ingest time.
func sameEntitlement(a, b schemas.Entitlement) bool {
	return a.CustomerID == b.CustomerID && a.Email == b.Email && a.UserID == b.UserID && a.Plan == b.Plan && a.Status == b.Status &&
		a.Access == b.Access && eqTime(a.CurrentPeriodEnd, b.CurrentPeriodEnd) && eqTime(a.GraceUntil, b.GraceUntil) &&
		a.Flagged == b.Flagged && a.FlagReason == b.FlagReason && eqStrings(a.SourceEventIDs, b.SourceEventIDs) &&
		a.LastEventAt.Equal(b.LastEventAt) && eqStrings(a.CircleMemberIDs, b.CircleMemberIDs) &&
		eqStrings(a.KitSubscriberIDs, b.KitSubscriberIDs) && a.Deleted == b.Deleted
}

// resolveByIdentity finds the live customer holding any identifier listed in
// an identity record (for ids the fact log replay never produced).
func (s *State) resolveByIdentity(rec *schemas.Identity) string {
	var ids []ID
	ids = append(ids, MakeID(KindUser, rec.UserID))
	for _, e := range rec.Emails {
		ids = append(ids, MakeID(KindEmail, e))
	}
	for _, v := range rec.Stripe {
		ids = append(ids, MakeID(KindStripe, v))
	}
	for _, v := range rec.Circle {
		ids = append(ids, MakeID(KindCircle, v))
	}
	for _, v := range rec.Kit {
		ids = append(ids, MakeID(KindKit, v))
	}
	for _, id := range ids {
		if root, ok := s.FindID(id); ok && id != "" {
			if c := s.comps[root]; c.id != "" {
				return c.id
			}
		}
	}
	return ""
}
