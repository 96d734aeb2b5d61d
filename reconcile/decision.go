package reconcile

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/launchready/launchready/schemas"
)

// decider collects the decisions of one fact.
type decider struct {
	s        *State
	f        *Fact
	customer string
	out      []schemas.Decision
}

func (d *decider) add(kind, rule string, before, after any, flagged bool) {
	bj, _ := json.Marshal(before)
	aj, _ := json.Marshal(after)
	if before == nil {
		bj = nil
	}
	id := hash16(d.customer + "|" + kind + "|" + d.f.Key + "|" + string(aj))
	d.out = append(d.out, schemas.Decision{
		V: 1, DecisionID: id, CustomerID: d.customer, Kind: kind, Rule: rule, Before: bj, After: aj,
		CausingIDs: []string{d.f.Key}, Flagged: flagged, At: d.s.now().UTC(), ProviderTime: d.f.At,
	})
}

// entSummary is the part of an entitlement a decision shows before and after.
type entSummary struct {
	Status     string     `json:"status"`
	Access     bool       `json:"access"`
	Plan       string     `json:"plan,omitempty"`
	PeriodEnd  *time.Time `json:"current_period_end,omitempty"`
	GraceUntil *time.Time `json:"grace_until,omitempty"`
	Flagged    bool       `json:"flagged,omitempty"`
	FlagReason string     `json:"flag_reason,omitempty"`
}

func (a entSummary) equal(b entSummary) bool {
	return a.Status == b.Status && a.Access == b.Access && a.Plan == b.Plan && eqTime(a.PeriodEnd, b.PeriodEnd) &&
		eqTime(a.GraceUntil, b.GraceUntil) && a.Flagged == b.Flagged && a.FlagReason == b.FlagReason
}

func entSummaryOf(v Verdict) entSummary {
	st := v.Status
	if st == "" {
		st = schemas.StatusNone
	}
	return entSummary{Status: st, Access: v.Access, Plan: v.Plan, PeriodEnd: v.PeriodEnd, GraceUntil: v.GraceUntil, Flagged: v.Flagged, FlagReason: v.FlagReason}
}

type idSum struct {
	CustomerID string   `json:"customer_id"`
	UserID     string   `json:"user_id,omitempty"`
	Email      string   `json:"email,omitempty"`
	Emails     []string `json:"emails,omitempty"`
	Stripe     []string `json:"stripe_customer_ids,omitempty"`
	Circle     []string `json:"circle_member_ids,omitempty"`
	Kit        []string `json:"kit_subscriber_ids,omitempty"`
	Sessions   []string `json:"chat_session_ids,omitempty"`
}

func idSummary(i schemas.Identity) idSum {
	return idSum{CustomerID: i.CustomerID, UserID: i.UserID, Email: i.Email, Emails: i.Emails, Stripe: i.Stripe, Circle: i.Circle, Kit: i.Kit, Sessions: i.Sessions}
}

func personIDs(ids []ID) []ID {
	var out []ID
	for _, id := range ids {
		if id.Person() {
			out = append(out, id)
		}
	}
	return out
}

func keysOf(m map[ID]bool) []ID {
	out := make([]ID, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func joinIDs(ids []ID) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = string(id)
	}
	return strings.Join(parts, ", ")
}
