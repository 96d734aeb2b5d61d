package audit

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Entry kinds of a timeline, in the order entries of the same instant are told.
const (
	EntryEvent       = "event"       // a provider event received (Duplicate marks a re-delivery)
	EntryChange      = "change"      // a row change in the app database
	EntryIdentity    = "identity"    // a key linked to the customer
	EntryDecision    = "decision"    // a reconciler decision and its rule
	EntryEntitlement = "entitlement" // the access state that resulted
	EntryMismatch    = "mismatch"    // a downstream system disagreed (or agreed again)
	EntrySink        = "sink"        // a push to Circle or Kit and its result
	EntryDeadLetter  = "dead_letter" // a record some stage could not handle
)

var entryRank = map[string]int{EntryEvent: 0, EntryChange: 1, EntryIdentity: 2, EntryDecision: 3, EntryEntitlement: 4, EntryMismatch: 5, EntrySink: 6, EntryDeadLetter: 7}

// Entry is one line of a customer's story.
type Entry struct {
	At        time.Time `json:"at"`
	Kind      string    `json:"kind"`
	Source    string    `json:"source"`           // provider, schema.table, reconcile, or the sink's provider
	What      string    `json:"what"`             // event type, operation, rule, action…
	ID        string    `json:"id"`               // event id, decision id, mismatch id, action id…
	Customer  string    `json:"customer"`         // the key the row is filed under
	Status    string    `json:"status,omitempty"` // duplicate, access/no access, open/closed, ok/error…
	Detail    string    `json:"detail,omitempty"`
	Duplicate bool      `json:"duplicate,omitempty"`
	RecordID  string    `json:"record_id"`
}

// TimelineQuery selects whose story to tell: by Email or by Customer (a
// canonical customer id, or any key linked to one: a Stripe customer, a Kit
// subscriber or Circle member id). Since/Until bound it when set; Limit keeps
// the most recent entries (default 1000).
type TimelineQuery struct {
	Email    string
	Customer string
	Since    time.Time
	Until    time.Time
	Limit    int
}

// TimelineResult is the story, oldest entry first.
type TimelineResult struct {
	Query       string   `json:"query"`
	CustomerIDs []string `json:"customer_ids"`
	Keys        []string `json:"keys"`
	Links       []Link   `json:"links"`
	Entries     []Entry  `json:"entries"`
	// Truncated is set when older entries were left out (see Limit).
	Truncated bool `json:"truncated"`
}

// ErrNoQuery is returned when a query names neither an email nor a customer.
var ErrNoQuery = errors.New("name a customer: --email or --customer")

func (q TimelineQuery) key() (string, error) {
	switch {
	case q.Email != "" && q.Customer != "":
		return "", errors.New("name a customer by --email or by --customer, not both")
	case q.Email != "":
		return normEmail(q.Email), nil
	case q.Customer != "":
		return strings.TrimSpace(q.Customer), nil
	}
	return "", ErrNoQuery
}

// Timeline tells everything that touched one customer, in order: events
// received (duplicates marked), app database changes, identity links,
// decisions with their rule, entitlement states, mismatches, sink pushes and
// dead letters. It finds the customer ids linked to the email (or id) in the
// identity rows, then every row filed under any of their keys, using the
// tables' primary indexes throughout.
func Timeline(ctx context.Context, q Querier, db string, tq TimelineQuery) (*TimelineResult, error) {
	key, err := tq.key()
	if err != nil {
		return nil, err
	}
	if tq.Limit <= 0 {
		tq.Limit = 1000
	}
	// Small index reads: one thread each is faster than a pool of them, and
	// leaves the cores to the parallel queries and the writer.
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_threads": 1}))
	id, err := resolve(ctx, q, db, key)
	if err != nil {
		return nil, err
	}
	res := &TimelineResult{Query: key, CustomerIDs: nonNil(id.customers), Keys: id.keys, Links: id.links}
	if res.Links == nil {
		res.Links = []Link{}
	}
	customers := id.customers
	if len(customers) == 0 && tq.Customer != "" {
		customers = []string{key} // no identity yet: rows may still carry the id
	}
	tf, targs := timeFilter(tq.Since, tq.Until)
	limit := " LIMIT " + strconv.Itoa(tq.Limit+1)

	type part struct {
		name  string
		query string
		args  []any
		scan  func(driver.Rows) (Entry, error)
	}
	var parts []part
	byKeys := func(tbl string) (string, []any) {
		f, a := keyFilter(db, tbl, id.keys)
		return f + " AND " + tf, append(a, targs...)
	}
	f, a := byKeys("raw_events")
	parts = append(parts, part{"raw_events", `SELECT at_ms, record_id, customer_key, provider, event_id, type, object_id, source,
		verification, duplicate, first_seen_ms, provider_ms FROM ` + db + `.raw_events WHERE ` + f +
		` ORDER BY at_ms DESC LIMIT 1 BY record_id` + limit, a, scanEvent})
	f, a = byKeys("cdc_changes")
	parts = append(parts, part{"cdc_changes", `SELECT at_ms, record_id, customer_key, schema_name, table_name, op, lsn,
		changed_columns FROM ` + db + `.cdc_changes WHERE ` + f + ` ORDER BY at_ms DESC LIMIT 1 BY record_id` + limit, a, scanChange})
	f, a = byKeys("dlq")
	parts = append(parts, part{"dlq", `SELECT at_ms, record_id, customer_key, stage, source_topic, reason
		FROM ` + db + `.dlq WHERE ` + f + ` ORDER BY at_ms DESC LIMIT 1 BY record_id` + limit, a, scanDeadLetter})
	if len(customers) > 0 {
		cl, ca := in(customers)
		ca = append(ca, targs...)
		parts = append(parts,
			part{"decisions", `SELECT at_ms, decision_id, customer_id, kind, rule, causing_event_ids, flagged
				FROM ` + db + `.decisions WHERE customer_id IN ` + cl + ` AND ` + tf +
				` ORDER BY at_ms DESC LIMIT 1 BY decision_id` + limit, ca, scanDecision},
			part{"entitlements", `SELECT at_ms, record_id, customer_id, version, status, access, plan, flagged, flag_reason, deleted
				FROM ` + db + `.entitlements WHERE customer_id IN ` + cl + ` AND ` + tf +
				` ORDER BY at_ms DESC LIMIT 1 BY record_id` + limit, ca, scanEntitlement},
			part{"mismatches", `SELECT at_ms, record_id, customer_id, mismatch_id, kind, system, state, detail
				FROM ` + db + `.mismatches WHERE customer_id IN ` + cl + ` AND ` + tf +
				` ORDER BY at_ms DESC LIMIT 1 BY record_id` + limit, ca, scanMismatch},
			part{"sink_actions", `SELECT at_ms, record_id, customer_id, action_id, provider, action, target, status,
				http_status, error, attempts FROM ` + db + `.sink_actions WHERE customer_id IN ` + cl + ` AND ` + tf +
				` ORDER BY at_ms DESC LIMIT 1 BY record_id` + limit, ca, scanSink},
		)
	}

	results := make([][]Entry, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = each(ctx, q, p.query, p.args, func(r driver.Rows) error {
				e, err := p.scan(r)
				if err == nil {
					results[i] = append(results[i], e)
				}
				return err
			})
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", p.name, errs[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var entries []Entry
	for _, r := range results {
		if len(r) > tq.Limit {
			res.Truncated = true
		}
		entries = append(entries, r...)
	}
	for _, l := range id.links {
		if inWindow(l.At, tq.Since, tq.Until) {
			entries = append(entries, linkEntry(l))
		}
	}
	sortEntries(entries)
	if len(entries) > tq.Limit {
		entries = entries[len(entries)-tq.Limit:]
		res.Truncated = true
	}
	res.Entries = entries
	if res.Entries == nil {
		res.Entries = []Entry{}
	}
	return res, nil
}

func inWindow(t, since, until time.Time) bool {
	return (since.IsZero() || !t.Before(since)) && (until.IsZero() || t.Before(until))
}

// sortEntries orders entries by time, then by the order a story is told in.
func sortEntries(es []Entry) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if !a.At.Equal(b.At) {
			return a.At.Before(b.At)
		}
		if entryRank[a.Kind] != entryRank[b.Kind] {
			return entryRank[a.Kind] < entryRank[b.Kind]
		}
		return a.RecordID < b.RecordID
	})
}

func linkEntry(l Link) Entry {
	what := "linked " + l.Kind + " " + l.Key
	switch l.Kind {
	case "customer":
		what = "customer record created"
	case "merged_into":
		what = "merged into " + l.Key
	}
	return Entry{At: l.At, Kind: EntryIdentity, Source: "reconcile", What: what, ID: l.Key, Customer: l.CustomerID,
		Detail: "identity v" + strconv.FormatInt(l.Version, 10), RecordID: l.CustomerID + "@v" + strconv.FormatInt(l.Version, 10) + "/" + l.Kind + "/" + l.Key}
}

func scanEvent(r driver.Rows) (Entry, error) {
	var (
		e                         Entry
		atMS, firstMS, providerMS int64
		objectID, src, verify     string
		dup                       uint8
	)
	if err := r.Scan(&atMS, &e.RecordID, &e.Customer, &e.Source, &e.ID, &e.What, &objectID, &src, &verify, &dup, &firstMS, &providerMS); err != nil {
		return e, err
	}
	e.At, e.Kind, e.Duplicate = msTime(atMS), EntryEvent, dup == 1
	var detail []string
	if objectID != "" {
		detail = append(detail, "object "+objectID)
	}
	detail = append(detail, "via "+src+" ("+verify+")")
	if providerMS != 0 {
		detail = append(detail, "provider time "+formatTime(msTime(providerMS)))
	}
	if e.Duplicate {
		e.Status = "duplicate"
		if firstMS != 0 {
			detail = append(detail, "first received "+formatTime(msTime(firstMS)))
		}
	} else {
		e.Status = "received"
	}
	e.Detail = strings.Join(detail, ", ")
	return e, nil
}

func scanChange(r driver.Rows) (Entry, error) {
	var (
		e             Entry
		atMS          int64
		schema, table string
		op, lsn       string
		changed       []string
	)
	if err := r.Scan(&atMS, &e.RecordID, &e.Customer, &schema, &table, &op, &lsn, &changed); err != nil {
		return e, err
	}
	e.At, e.Kind, e.Source, e.ID = msTime(atMS), EntryChange, schema+"."+table, lsn
	e.What = map[string]string{"c": "insert", "u": "update", "d": "delete", "r": "snapshot"}[op]
	if e.What == "" {
		e.What = op
	}
	if len(changed) > 0 {
		e.Detail = "changed " + strings.Join(changed, ", ")
	}
	return e, nil
}

func scanDeadLetter(r driver.Rows) (Entry, error) {
	var (
		e     Entry
		atMS  int64
		topic string
	)
	if err := r.Scan(&atMS, &e.RecordID, &e.Customer, &e.Source, &topic, &e.Detail); err != nil {
		return e, err
	}
	e.At, e.Kind, e.What, e.ID, e.Status = msTime(atMS), EntryDeadLetter, "could not handle a record of "+topic, e.RecordID, "dead letter"
	return e, nil
}

func scanDecision(r driver.Rows) (Entry, error) {
	var (
		e       Entry
		atMS    int64
		kind    string
		causing []string
		flagged uint8
	)
	if err := r.Scan(&atMS, &e.ID, &e.Customer, &kind, &e.What, &causing, &flagged); err != nil {
		return e, err
	}
	e.At, e.Kind, e.Source, e.RecordID, e.Status = msTime(atMS), EntryDecision, "reconcile", e.ID, kind
	if e.What == "" {
		e.What = kind
	}
	if len(causing) > 0 {
		e.Detail = "caused by " + strings.Join(causing, ", ")
	}
	if flagged == 1 {
		e.Detail = strings.TrimPrefix(e.Detail+"; flagged for review", "; ")
	}
	return e, nil
}

func scanEntitlement(r driver.Rows) (Entry, error) {
	var (
		e                        Entry
		atMS, version            int64
		status, plan, reason     string
		access, flagged, deleted uint8
	)
	if err := r.Scan(&atMS, &e.RecordID, &e.Customer, &version, &status, &access, &plan, &flagged, &reason, &deleted); err != nil {
		return e, err
	}
	e.At, e.Kind, e.Source, e.ID = msTime(atMS), EntryEntitlement, "reconcile", "v"+strconv.FormatInt(version, 10)
	e.What = status
	if plan != "" {
		e.What += " (plan " + plan + ")"
	}
	e.Status = "no access"
	if access == 1 {
		e.Status = "access"
	}
	var detail []string
	if flagged == 1 {
		detail = append(detail, "flagged: "+reason)
	}
	if deleted == 1 {
		detail = append(detail, "merged away")
	}
	e.Detail = strings.Join(detail, "; ")
	return e, nil
}

func scanMismatch(r driver.Rows) (Entry, error) {
	var (
		e         Entry
		atMS      int64
		kind, sys string
	)
	if err := r.Scan(&atMS, &e.RecordID, &e.Customer, &e.ID, &kind, &sys, &e.Status, &e.Detail); err != nil {
		return e, err
	}
	e.At, e.Kind, e.Source, e.What = msTime(atMS), EntryMismatch, sys, kind
	return e, nil
}

func scanSink(r driver.Rows) (Entry, error) {
	var (
		e                    Entry
		atMS                 int64
		action, target, errs string
		httpStatus, attempts int32
	)
	if err := r.Scan(&atMS, &e.RecordID, &e.Customer, &e.ID, &e.Source, &action, &target, &e.Status, &httpStatus, &errs, &attempts); err != nil {
		return e, err
	}
	e.At, e.Kind = msTime(atMS), EntrySink
	e.What = action
	if target != "" {
		e.What += " " + target
	}
	var detail []string
	if httpStatus != 0 {
		detail = append(detail, "HTTP "+strconv.Itoa(int(httpStatus)))
	}
	if attempts > 1 {
		detail = append(detail, strconv.Itoa(int(attempts))+" attempts")
	}
	if errs != "" {
		detail = append(detail, errs)
	}
	e.Detail = strings.Join(detail, ", ")
	return e, nil
}

// formatTime is how times are shown to people: UTC, to the millisecond.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
}
