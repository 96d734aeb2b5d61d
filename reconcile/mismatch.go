package reconcile

import (
	"time"

	"fmt"
	"strings"

	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/schemas"
)

// Mismatch states.
const (
	MismatchOpen   = "open"
	MismatchClosed = "closed"
)

// Finding is one open disagreement between the desired state of a customer
// and what a downstream system was observed to hold.
type Finding struct {
	Kind   string
	System string
	Detail string
}

// MismatchID is a finding's stable id: customer|kind|system.
func MismatchID(customer, kind, system string) string {
	return customer + "|" + kind + "|" + system
}

// Findings compares what Circle and Kit should hold for the customer (the
// mapping's Desired) with what they were observed to hold: member snapshots
// from polls, pushes and webhooks, and sink results. A tag or group never
// observed is not a finding: only what was seen can disagree.
func Findings(c *Customer, v Verdict, m *mapping.Mapping) []Finding {
	var out []Finding
	add := func(kind, system, format string, a ...any) {
		out = append(out, Finding{Kind: kind, System: system, Detail: fmt.Sprintf(format, a...)})
	}
	ent := &schemas.Entitlement{Status: v.Status, Access: v.Access, Plan: v.Plan}
	desired := m.Desired(ent, zeroTime)
	var planTags []mapping.Ref
	if p, ok := m.Plan(v.Plan); ok && v.Access {
		planTags = p.Circle.MemberTags
	}
	circleIDs, kitIDs := c.values(KindCircle), c.values(KindKit)

	if v.Access && len(desired.CircleGroups)+len(planTags) > 0 {
		if len(circleIDs) == 0 {
			add(schemas.MismatchMissingIn, SourceCircle, "paying customer (plan %s) has no Circle member", v.Plan)
		} else {
			var missing []string
			for _, g := range desired.CircleGroups {
				if present, known := c.held(SourceCircle, HoldGroup, g); known && !present {
					missing = append(missing, refText("access group", g))
				}
			}
			for _, t := range planTags {
				if present, known := c.held(SourceCircle, HoldTag, t); known && !present {
					missing = append(missing, refText("member tag", t))
				}
			}
			if len(missing) > 0 {
				add(schemas.MismatchPaidNoAccess, SourceCircle, "paid for %s but Circle lacks %s", v.Plan, strings.Join(missing, ", "))
			}
		}
	}
	if !v.Access {
		var held []string
		for _, p := range m.Plans {
			for _, g := range p.Circle.AccessGroups {
				if present, _ := c.held(SourceCircle, HoldGroup, g); present {
					held = append(held, refText("access group", g))
				}
			}
			for _, t := range p.Circle.MemberTags {
				if present, _ := c.held(SourceCircle, HoldTag, t); present {
					held = append(held, refText("member tag", t))
				}
			}
		}
		if len(held) > 0 {
			add(schemas.MismatchAccessNotPaid, SourceCircle, "Circle grants %s without a paid entitlement (status %s)", strings.Join(held, ", "), v.Status)
		}
	}
	if v.Status != schemas.StatusNone && v.Status != "" {
		var leads []string
		for _, t := range m.Kit.LeadTags {
			if present, _ := c.held(SourceKit, HoldTag, t); present {
				leads = append(leads, refText("tag", t))
			}
		}
		if len(leads) > 0 {
			add(schemas.MismatchPaidTaggedLead, SourceKit, "customer (status %s) still has Kit lead %s: gets sales email", v.Status, strings.Join(leads, ", "))
		}
	}
	if !v.Access && v.Status != schemas.StatusNone && v.Status != "" {
		var tags []string
		for _, p := range m.Plans {
			for _, t := range p.Kit.Tags {
				if present, _ := c.held(SourceKit, HoldTag, t); present {
					tags = append(tags, refText("tag", t))
				}
			}
		}
		if len(tags) > 0 {
			add(schemas.MismatchRevokedStillTag, SourceKit, "%s customer still has Kit customer %s", v.Status, strings.Join(tags, ", "))
		}
	}
	if v.Access && len(desired.KitTags) > 0 && len(kitIDs) == 0 {
		add(schemas.MismatchMissingIn, SourceKit, "paying customer (plan %s) has no Kit subscriber", v.Plan)
	}
	for _, d := range []struct{ system, kind, what string }{
		{"app", KindUser, "app users"}, {SourceStripe, KindStripe, "Stripe customers"},
		{SourceCircle, KindCircle, "Circle members"}, {SourceKit, KindKit, "Kit subscribers"},
	} {
		if ids := c.values(d.kind); len(ids) > 1 {
			add(schemas.MismatchDuplicateRecords, d.system, "%d %s for one person: %s", len(ids), d.what, strings.Join(ids, ", "))
		}
	}
	return out
}

func refText(what string, r mapping.Ref) string {
	return fmt.Sprintf("%s %q (%d)", what, r.Name, r.ID)
}

// held reports whether the customer's records in system were last seen
// holding the tag or group r, and whether anything was seen at all.
func (c *Customer) held(system, kind string, r mapping.Ref) (present, known bool) {
	var best *obsFact
	consider := func(of *obsFact, p bool) {
		if of != nil && (best == nil || of.newerThan(best)) {
			best, present = of, p
		}
	}
	if of := c.holds[system+"|"+kind+"|#"+itoa(r.ID)]; of != nil {
		consider(of, of.hold.Present)
	}
	if of := c.holds[system+"|"+kind+"|"+lower(r.Name)]; of != nil {
		consider(of, of.hold.Present)
	}
	if kind == HoldTag {
		for _, of := range c.records {
			if of.system == system && of.observe.Snapshot {
				consider(of, containsID(of.observe.Tags, r.ID))
			}
		}
	}
	return present, best != nil
}

func containsID(ids []int64, id int64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

var zeroTime = time.Time{}
