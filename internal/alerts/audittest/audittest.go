// Package audittest writes rows into the ClickHouse audit tables (the real
// DDL of schemas/clickhouse, applied by testenv.Migrated) for the tests of
// the dashboards, the alert evaluator and the ops page. Record ids default
// to a value derived from the row, so inserting a row twice models the audit
// writer re-inserting a batch.
package audittest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Raw is a raw_events row.
type Raw struct {
	At                                   time.Time
	Provider, EventID, Type, CustomerKey string
	Source                               string // default webhook
	Duplicate                            bool
	ProviderTime                         time.Time // default At
	Payload                              string
	Emails                               []string
}

// Mismatch is a mismatches row (one transition).
type Mismatch struct {
	At                                time.Time
	Customer, ID, Kind, System, State string
	Detail                            string
}

// Identity is an identity_links row.
type Identity struct {
	At                  time.Time
	Key, Kind, Customer string
	Version             int64
	Email, MergedInto   string
}

// Entitlement is an entitlements row.
type Entitlement struct {
	At                            time.Time
	Customer, Status, Plan, Email string
	Version                       int64
	Access, Deleted               bool
	LatencyMS, IngestedMS         int64
	LastEvent                     time.Time
}

// Sink is a sink_actions row.
type Sink struct {
	At                                           time.Time
	Customer, ActionID, Provider, Action, Target string
	Status, Error                                string
	HTTPStatus                                   int32
}

// DeadLetter is a dlq row.
type DeadLetter struct {
	At                                   time.Time
	Stage, SourceTopic, Reason, Customer string
	Key                                  string
}

// Rejection is a rejected_webhooks row: Count refused deliveries.
type Rejection struct {
	At                 time.Time
	RecordID, Provider string
	Reason             string
	Status             int
	Count              int64
}

// Decision is a decisions row.
type Decision struct {
	At                       time.Time
	Customer, ID, Kind, Rule string
	Causing                  []string
}

func b(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}

// insert appends rows through PrepareBatch (ClickHouse 18.16 hangs on
// INSERT … VALUES sent as a query).
func insert(t testing.TB, conn driver.Conn, db, table, cols string, n int, row func(i int) []any) {
	t.Helper()
	if n == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	batch, err := conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.%s (%s)", db, table, cols))
	if err != nil {
		t.Fatalf("audittest: prepare %s: %v", table, err)
	}
	for i := 0; i < n; i++ {
		if err := batch.Append(row(i)...); err != nil {
			t.Fatalf("audittest: append %s: %v", table, err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("audittest: insert %s: %v", table, err)
	}
}

func day(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC) }

// Raws inserts raw events.
func Raws(t testing.TB, conn driver.Conn, db string, rs ...Raw) {
	insert(t, conn, db, "raw_events", "event_date, at, at_ms, customer_key, record_id, provider, event_id, type, object_id, provider_customer, emails, provider_time, provider_ms, source, verification, duplicate, payload, topic",
		len(rs), func(i int) []any {
			r := rs[i]
			at := r.At.UTC()
			src := r.Source
			if src == "" {
				src = "webhook"
			}
			pt := r.ProviderTime
			if pt.IsZero() {
				pt = at
			}
			emails := r.Emails
			if emails == nil {
				emails = []string{}
			}
			rid := fmt.Sprintf("%s:%s@%d", r.Provider, r.EventID, at.UnixNano())
			return []any{day(at), at, at.UnixMilli(), r.CustomerKey, rid, r.Provider, r.EventID, r.Type, r.CustomerKey, r.CustomerKey,
				emails, pt.UTC(), pt.UnixMilli(), src, "signature", b(r.Duplicate), r.Payload, "lr.raw." + r.Provider}
		})
}

// Mismatches inserts mismatch transitions.
func Mismatches(t testing.TB, conn driver.Conn, db string, ms ...Mismatch) {
	insert(t, conn, db, "mismatches", "event_date, at, at_ms, customer_id, mismatch_id, record_id, kind, system, state, detail, topic",
		len(ms), func(i int) []any {
			m := ms[i]
			at := m.At.UTC()
			id := m.ID
			if id == "" {
				id = m.Customer + "|" + m.Kind + "|" + m.System
			}
			return []any{day(at), at, at.UnixMilli(), m.Customer, id, fmt.Sprintf("%s@%s@%d", id, m.State, at.UnixMilli()), m.Kind, m.System, m.State, m.Detail, "lr.mismatches"}
		})
}

// Identities inserts identity links.
func Identities(t testing.TB, conn driver.Conn, db string, ls ...Identity) {
	insert(t, conn, db, "identity_links", "event_date, at, at_ms, key, key_kind, customer_id, version, record_id, email, merged_into, topic",
		len(ls), func(i int) []any {
			l := ls[i]
			at := l.At.UTC()
			v := max(l.Version, 1)
			return []any{day(at), at, at.UnixMilli(), l.Key, l.Kind, l.Customer, v, fmt.Sprintf("%s@v%d", l.Customer, v), l.Email, l.MergedInto, "lr.identity"}
		})
}

// Customer links a canonical customer id to itself (key_kind customer) and
// to the given provider keys, e.g. "stripe=cus_1", "email=a@b.c".
func Customer(t testing.TB, conn driver.Conn, db string, at time.Time, id string, keys ...string) {
	ls := []Identity{{At: at, Key: id, Kind: "customer", Customer: id}}
	for _, k := range keys {
		kind, key, _ := strings.Cut(k, "=")
		ls = append(ls, Identity{At: at, Key: key, Kind: kind, Customer: id})
	}
	Identities(t, conn, db, ls...)
}

// Entitlements inserts entitlement states.
func Entitlements(t testing.TB, conn driver.Conn, db string, es ...Entitlement) {
	insert(t, conn, db, "entitlements", "event_date, at, at_ms, customer_id, version, record_id, email, plan, status, access, source_event_ids, last_event_ms, ingested_ms, latency_ms, circle_member_ids, kit_subscriber_ids, deleted, topic",
		len(es), func(i int) []any {
			e := es[i]
			at := e.At.UTC()
			last := e.LastEvent
			if last.IsZero() {
				last = at
			}
			return []any{day(at), at, at.UnixMilli(), e.Customer, e.Version, fmt.Sprintf("%s@v%d", e.Customer, e.Version), e.Email, e.Plan, e.Status, b(e.Access),
				[]string{}, last.UnixMilli(), e.IngestedMS, e.LatencyMS, []string{}, []string{}, b(e.Deleted), "lr.entitlements"}
		})
}

// Sinks inserts sink actions.
func Sinks(t testing.TB, conn driver.Conn, db string, ss ...Sink) {
	insert(t, conn, db, "sink_actions", "event_date, at, at_ms, customer_id, action_id, record_id, provider, action, target, status, http_status, error, attempts, topic",
		len(ss), func(i int) []any {
			s := ss[i]
			at := s.At.UTC()
			return []any{day(at), at, at.UnixMilli(), s.Customer, s.ActionID, fmt.Sprintf("%s@%s@%d", s.ActionID, s.Status, at.UnixMilli()), s.Provider, s.Action, s.Target, s.Status, s.HTTPStatus, s.Error, int32(1), "lr.sink.results"}
		})
}

// DeadLetters inserts dlq rows.
func DeadLetters(t testing.TB, conn driver.Conn, db string, ds ...DeadLetter) {
	insert(t, conn, db, "dlq", "event_date, at, at_ms, customer_key, record_id, stage, source_topic, record_key, reason, record, topic",
		len(ds), func(i int) []any {
			d := ds[i]
			at := d.At.UTC()
			return []any{day(at), at, at.UnixMilli(), d.Customer, fmt.Sprintf("dlq:%s:%s:%d:%d", d.SourceTopic, d.Key, at.UnixNano(), i), d.Stage, d.SourceTopic, d.Key, d.Reason, "{}", "lr.dlq"}
		})
}

// Rejections inserts rejected_webhooks rows.
func Rejections(t testing.TB, conn driver.Conn, db string, rs ...Rejection) {
	insert(t, conn, db, "rejected_webhooks", "event_date, at, at_ms, first_ms, record_id, provider, reason, http_status, count, topic",
		len(rs), func(i int) []any {
			r := rs[i]
			at := r.At.UTC()
			return []any{day(at), at, at.UnixMilli(), at.UnixMilli(), r.RecordID, r.Provider, r.Reason, int32(r.Status), r.Count, "lr.ingest.rejections"}
		})
}

// Decisions inserts decisions.
func Decisions(t testing.TB, conn driver.Conn, db string, ds ...Decision) {
	insert(t, conn, db, "decisions", "event_date, at, at_ms, customer_id, decision_id, kind, rule, causing_event_ids, topic",
		len(ds), func(i int) []any {
			d := ds[i]
			at := d.At.UTC()
			causing := d.Causing
			if causing == nil {
				causing = []string{}
			}
			return []any{day(at), at, at.UnixMilli(), d.Customer, d.ID, d.Kind, d.Rule, causing, "lr.decisions"}
		})
}
