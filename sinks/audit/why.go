package audit

import (
	"context"
	"errors"
	"fmt"
	"github.com/launchready/launchready/schemas"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// WhyQuery names the customer, by Email or by Customer (as in TimelineQuery).
type WhyQuery struct {
	Email    string
	Customer string
}

// EntitlementState is one published entitlement of a customer.
type EntitlementState struct {
	Version    int64     `json:"version"`
	At         time.Time `json:"at"`
	Status     string    `json:"status"`
	Plan       string    `json:"plan,omitempty"`
	Access     bool      `json:"access"`
	PeriodEnd  time.Time `json:"current_period_end,omitzero"`
	GraceUntil time.Time `json:"grace_until,omitzero"`
	Flagged    bool      `json:"flagged,omitempty"`
	FlagReason string    `json:"flag_reason,omitempty"`
	Deleted    bool      `json:"deleted,omitempty"`
}

// Answer is why a customer has (or lacks) access now: the latest entitlement
// state, the latest decision and the events that caused it, open mismatches,
// and what the sinks did about that state. Text says it in one paragraph.
type Answer struct {
	Query          string            `json:"query"`
	CustomerID     string            `json:"customer_id,omitempty"`
	Related        []string          `json:"related_customer_ids,omitempty"` // merged or former owners of the email
	Access         bool              `json:"access"`
	Entitlement    *EntitlementState `json:"entitlement"`
	Decision       *Entry            `json:"decision"`
	CausingIDs     []string          `json:"causing_event_ids"`
	Causes         []Entry           `json:"causes"` // the causing records found, oldest first
	OpenMismatches []Entry           `json:"open_mismatches"`
	Sinks          []Entry           `json:"sinks"` // latest outcome of each action for the current state
	Recent         []Entry           `json:"recent,omitempty"`
	Text           string            `json:"text"`
}

// Why answers "why does this customer have (no) access now?".
func Why(ctx context.Context, q Querier, db string, wq WhyQuery) (*Answer, error) {
	key, err := TimelineQuery{Email: wq.Email, Customer: wq.Customer}.key()
	if err != nil {
		return nil, err
	}
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_threads": 1}))
	id, err := resolve(ctx, q, db, key)
	if err != nil {
		return nil, err
	}
	a := &Answer{Query: key, CausingIDs: []string{}, Causes: []Entry{}, OpenMismatches: []Entry{}, Sinks: []Entry{}}
	cid := primaryCustomer(id, key, wq.Email != "")
	if cid == "" && wq.Customer != "" {
		cid = key // rows may carry an id no identity record names yet
	}
	if cid == "" {
		// Nobody is linked: say what the trail knows about the key itself.
		tl, err := Timeline(ctx, q, db, TimelineQuery{Email: wq.Email, Customer: wq.Customer, Limit: 5})
		if err != nil {
			return nil, err
		}
		a.Recent = tl.Entries
		a.Text = whyText(a)
		return a, nil
	}
	a.CustomerID = cid
	for _, c := range id.customers {
		if c != cid {
			a.Related = append(a.Related, c)
		}
	}
	// Two rounds of queries in parallel: what the customer's state is, then
	// what caused it and what the sinks did about it.
	err = parallel(
		func() (err error) { a.Entitlement, err = latestEntitlement(ctx, q, db, cid); return err },
		func() (err error) { a.Decision, a.CausingIDs, err = latestDecision(ctx, q, db, cid); return err },
		func() (err error) { a.OpenMismatches, err = openMismatches(ctx, q, db, cid); return err },
	)
	if err != nil {
		return nil, err
	}
	if a.Entitlement != nil {
		a.Access = a.Entitlement.Access && !a.Entitlement.Deleted
	}
	err = parallel(
		func() (err error) {
			if len(a.CausingIDs) > 0 {
				a.Causes, err = causes(ctx, q, db, id.keys, a.CausingIDs)
			}
			return err
		},
		func() (err error) {
			if a.Entitlement != nil {
				a.Sinks, err = sinkResults(ctx, q, db, cid, a.Entitlement.Version)
			}
			return err
		},
	)
	if err != nil {
		return nil, err
	}
	if a.Entitlement == nil && a.Decision == nil {
		tl, err := Timeline(ctx, q, db, TimelineQuery{Email: wq.Email, Customer: wq.Customer, Limit: 5})
		if err != nil {
			return nil, err
		}
		a.Recent = tl.Entries
	}
	a.Text = whyText(a)
	return a, nil
}

// primaryCustomer picks whom the answer is about among the customers linked
// to key: not merged away; for an email, preferably the customer whose
// current identity carries it; then the most recently updated.
func primaryCustomer(id *identity, key string, byEmail bool) string {
	best, bestScore := "", -1
	for _, c := range id.customers {
		cur, ok := id.current[c]
		if !ok {
			continue
		}
		score := 0
		if cur.mergedInto == "" {
			score += 4
		}
		if (byEmail && cur.email == key) || (!byEmail && c == key) {
			score += 2
		}
		if score > bestScore || (score == bestScore && cur.atMS > id.current[best].atMS) {
			best, bestScore = c, score
		}
	}
	return best
}

func latestEntitlement(ctx context.Context, q Querier, db, cid string) (*EntitlementState, error) {
	var st *EntitlementState
	err := each(ctx, q, `SELECT version, at_ms, status, plan, access, period_end_ms, grace_until_ms, flagged, flag_reason, deleted
		FROM `+db+`.entitlements WHERE customer_id = ? ORDER BY version DESC, at_ms DESC LIMIT 1`, []any{cid}, func(r driver.Rows) error {
		var s EntitlementState
		var atMS, endMS, graceMS int64
		var access, flagged, deleted uint8
		if err := r.Scan(&s.Version, &atMS, &s.Status, &s.Plan, &access, &endMS, &graceMS, &flagged, &s.FlagReason, &deleted); err != nil {
			return err
		}
		s.At, s.PeriodEnd, s.GraceUntil = msTime(atMS), msTime(endMS), msTime(graceMS)
		s.Access, s.Flagged, s.Deleted = access == 1, flagged == 1, deleted == 1
		st = &s
		return nil
	})
	return st, err
}

// openMismatches are the customer's mismatches whose latest transition is
// open (closed wins a tie).
func openMismatches(ctx context.Context, q Querier, db, cid string) ([]Entry, error) {
	out := []Entry{}
	err := each(ctx, q, `SELECT at_ms, record_id, customer_id, mismatch_id, kind, system, state, detail
		FROM `+db+`.mismatches WHERE customer_id = ? ORDER BY at_ms DESC, state = 'closed' DESC LIMIT 1 BY mismatch_id`,
		[]any{cid}, func(r driver.Rows) error {
			e, err := scanMismatch(r)
			if err == nil && e.Status == "open" {
				out = append(out, e)
			}
			return err
		})
	sortEntries(out)
	return out, err
}

// sinkResults is the latest outcome of each sink action for one
// entitlement version.
func sinkResults(ctx context.Context, q Querier, db, cid string, version int64) ([]Entry, error) {
	out := []Entry{}
	err := each(ctx, q, `SELECT at_ms, record_id, customer_id, action_id, provider, action, target, status,
		http_status, error, attempts FROM `+db+`.sink_actions WHERE customer_id = ? AND entitlement_version = ?
		ORDER BY at_ms DESC LIMIT 1 BY action_id`, []any{cid, version}, func(r driver.Rows) error {
		e, err := scanSink(r)
		if err == nil {
			out = append(out, e)
		}
		return err
	})
	sortEntries(out)
	return out, err
}

// parallel runs fns concurrently and joins their errors.
func parallel(fns ...func() error) error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fn() }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// latestDecision is the customer's latest entitlement decision (the latest
// decision of any kind when none is about entitlements).
func latestDecision(ctx context.Context, q Querier, db, cid string) (*Entry, []string, error) {
	var (
		d       *Entry
		causing []string
	)
	err := each(ctx, q, `SELECT at_ms, decision_id, customer_id, kind, rule, causing_event_ids, flagged
		FROM `+db+`.decisions WHERE customer_id = ? ORDER BY kind = 'entitlement' DESC, at_ms DESC LIMIT 1`, []any{cid}, func(r driver.Rows) error {
		var (
			e       Entry
			atMS    int64
			kind    string
			flagged uint8
		)
		if err := r.Scan(&atMS, &e.ID, &e.Customer, &kind, &e.What, &causing, &flagged); err != nil {
			return err
		}
		e.At, e.Kind, e.Source, e.Status, e.RecordID = msTime(atMS), EntryDecision, "reconcile", kind, e.ID
		if flagged == 1 {
			e.Detail = "flagged for review"
		}
		d = &e
		return nil
	})
	return d, nonNil(causing), err
}

// causes finds the records a decision names: raw events by their dedup key
// "<provider>:<event id>" as the reconciler names them, or by bare event id
// (their first delivery), and CDC changes by record id. It looks under the
// customer's keys first (primary index) and then, for ids still missing,
// through the whole table.
func causes(ctx context.Context, q Querier, db string, keys, ids []string) ([]Entry, error) {
	var (
		mu    sync.Mutex
		out   []Entry
		found = map[string]bool{}
	)
	keep := func(e Entry, id string) {
		mu.Lock()
		defer mu.Unlock()
		if !found[id] {
			found[id] = true
			out = append(out, e)
		}
	}
	lookup := append([]string(nil), ids...)
	for _, id := range ids {
		if _, ev, ok := eventKey(id); ok {
			lookup = append(lookup, ev)
		}
	}
	idList, idArgs := in(lookup)
	for _, scoped := range []bool{len(keys) > 0, false} {
		where, args := "", idArgs
		if scoped {
			kl, ka := in(keys)
			where, args = "customer_key IN "+kl+" AND ", append(ka, idArgs...)
		}
		err := parallel(
			func() error {
				return each(ctx, q, `SELECT at_ms, record_id, customer_key, provider, event_id, type, object_id, source,
					verification, duplicate, first_seen_ms, provider_ms FROM `+db+`.raw_events WHERE `+where+`event_id IN `+idList+`
					ORDER BY at_ms ASC LIMIT 1 BY event_id`, args, func(r driver.Rows) error {
					e, err := scanEvent(r)
					if err == nil {
						keep(e, e.Source+":"+e.ID)
					}
					return err
				})
			},
			func() error {
				return each(ctx, q, `SELECT at_ms, record_id, customer_key, schema_name, table_name, op, lsn, changed_columns
					FROM `+db+`.cdc_changes WHERE `+where+`record_id IN `+idList+` LIMIT 1 BY record_id`, args, func(r driver.Rows) error {
					e, err := scanChange(r)
					if err == nil {
						keep(e, e.RecordID)
					}
					return err
				})
			},
		)
		if err != nil {
			return nil, err
		}
		if len(found) == len(ids) {
			break
		}
	}
	sortEntries(out)
	if out == nil {
		out = []Entry{}
	}
	return out, nil
}

// whyText is the one-paragraph answer.
func whyText(a *Answer) string {
	var b strings.Builder
	who := a.Query
	if a.CustomerID != "" && a.CustomerID != a.Query {
		who += " (customer " + a.CustomerID + ")"
	}
	if a.CustomerID == "" {
		fmt.Fprintf(&b, "No customer is linked to %s in the identity records, so nothing grants it access.", a.Query)
		writeRecent(&b, a.Recent)
		return b.String()
	}
	e := a.Entitlement
	switch {
	case e == nil:
		fmt.Fprintf(&b, "%s has NO access now: no entitlement was ever published for this customer.", who)
	case e.Deleted:
		fmt.Fprintf(&b, "%s has NO access under this id: it was merged into another customer (entitlement v%d of %s).", who, e.Version, formatTime(e.At))
	default:
		verdict := "has NO access"
		if e.Access {
			verdict = "HAS access"
		}
		fmt.Fprintf(&b, "%s %s now: entitlement v%d of %s says status %s", who, verdict, e.Version, formatTime(e.At), e.Status)
		if e.Plan != "" {
			fmt.Fprintf(&b, ", plan %s", e.Plan)
		}
		if !e.PeriodEnd.IsZero() {
			fmt.Fprintf(&b, ", paid through %s", formatTime(e.PeriodEnd))
		}
		if !e.GraceUntil.IsZero() {
			fmt.Fprintf(&b, ", in grace until %s", formatTime(e.GraceUntil))
		}
		b.WriteString(".")
		if e.Flagged {
			fmt.Fprintf(&b, " It is flagged for review: %s.", firstOf(e.FlagReason, "no reason given"))
		}
	}
	if d := a.Decision; d != nil {
		fmt.Fprintf(&b, " The latest decision (%s, %s) applied the rule %q", d.Status, formatTime(d.At), d.What)
		if len(a.CausingIDs) > 0 {
			b.WriteString(", caused by ")
			b.WriteString(describeCauses(a.CausingIDs, a.Causes))
		}
		b.WriteString(".")
	} else if e != nil {
		b.WriteString(" No decision is recorded for it.")
	}
	if len(a.OpenMismatches) > 0 {
		parts := make([]string, len(a.OpenMismatches))
		for i, m := range a.OpenMismatches {
			parts[i] = fmt.Sprintf("%s in %s since %s", m.What, m.Source, formatTime(m.At))
			if m.Detail != "" {
				parts[i] += " (" + m.Detail + ")"
			}
		}
		fmt.Fprintf(&b, " Open mismatches: %s.", strings.Join(parts, "; "))
	} else {
		b.WriteString(" No mismatch is open.")
	}
	if e != nil {
		if len(a.Sinks) == 0 {
			fmt.Fprintf(&b, " No sink action is recorded for entitlement v%d.", e.Version)
		} else {
			parts := make([]string, len(a.Sinks))
			for i, s := range a.Sinks {
				parts[i] = fmt.Sprintf("%s %s %s", s.Source, s.What, s.Status)
				if s.Detail != "" {
					parts[i] += " (" + s.Detail + ")"
				}
			}
			fmt.Fprintf(&b, " Sync of v%d: %s.", e.Version, strings.Join(parts, "; "))
		}
	}
	if e == nil && a.Decision == nil {
		writeRecent(&b, a.Recent)
	}
	return b.String()
}

// eventKey splits a raw event's dedup key "<provider>:<event id>".
func eventKey(id string) (provider, eventID string, ok bool) {
	provider, eventID, ok = strings.Cut(id, ":")
	switch provider {
	case schemas.ProviderStripe, schemas.ProviderKit, schemas.ProviderCircle:
		return provider, eventID, ok && eventID != ""
	}
	return "", "", false
}

func describeCauses(ids []string, found []Entry) string {
	byID := map[string]Entry{}
	for _, c := range found {
		byID[c.ID] = c
		byID[c.RecordID] = c
		if c.Kind == EntryEvent {
			byID[c.Source+":"+c.ID] = c
		}
	}
	parts := make([]string, 0, len(ids))
	for _, id := range ids {
		c, ok := byID[id]
		switch {
		case !ok:
			parts = append(parts, id+" (not in the audit trail)")
		case c.Kind == EntryEvent:
			parts = append(parts, fmt.Sprintf("%s %s %s received %s", c.Source, c.What, c.ID, formatTime(c.At)))
		default:
			parts = append(parts, fmt.Sprintf("%s %s of %s", c.Source, c.What, formatTime(c.At)))
		}
	}
	if len(parts) > 3 {
		return strings.Join(parts[:3], ", ") + " and " + strconv.Itoa(len(parts)-3) + " more"
	}
	return strings.Join(parts, ", ")
}

func writeRecent(b *strings.Builder, recent []Entry) {
	if len(recent) == 0 {
		b.WriteString(" The audit trail holds nothing under it.")
		return
	}
	last := recent[len(recent)-1]
	kinds := []string{}
	for _, e := range recent {
		if !slices.Contains(kinds, e.Kind) {
			kinds = append(kinds, e.Kind)
		}
	}
	fmt.Fprintf(b, " The audit trail holds %d recent records under it (%s); the latest: %s %s %s at %s.",
		len(recent), strings.Join(kinds, ", "), last.Source, last.What, last.ID, formatTime(last.At))
}
