package dashboards

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/launchready/launchready/internal/alerts/audittest"
	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/testenv"
)

// seedAudit writes a small, fully known history into a fresh audit database:
// the range is [T-6h, T], T on the hour, panels use 1h buckets.
func seedAudit(t *testing.T, conn driver.Conn, db string, T time.Time) {
	h := func(n int, m int) time.Time { return T.Add(time.Duration(n)*time.Hour + time.Duration(m)*time.Minute) }
	raws := []audittest.Raw{
		{At: h(-5, 10), Provider: "stripe", EventID: "evt_1", Type: "invoice.paid", CustomerKey: "cus_1"},
		{At: h(-5, 20), Provider: "stripe", EventID: "evt_2", Type: "invoice.paid", CustomerKey: "cus_2"},
		{At: h(-5, 30), Provider: "stripe", EventID: "evt_2", Type: "invoice.paid", CustomerKey: "cus_2", Duplicate: true},
		{At: h(-2, 5), Provider: "stripe", EventID: "evt_3", Type: "charge.refunded", CustomerKey: "cus_1"},
		{At: h(-3, 1), Provider: "kit", EventID: "k-1", Type: "subscriber.created", CustomerKey: "41"},
		{At: h(-3, 2), Provider: "kit", EventID: "k-1", Type: "subscriber.created", CustomerKey: "41", Duplicate: true},
		{At: h(-1, 1), Provider: "circle", EventID: "poll:7", Type: "member.updated", CustomerKey: "7", Source: "poll"},
		{At: h(-7, 0), Provider: "stripe", EventID: "evt_0", Type: "invoice.paid", CustomerKey: "cus_0"}, // before the range
	}
	audittest.Raws(t, conn, db, raws...)
	audittest.Raws(t, conn, db, raws[0]) // a batch re-inserted after a crash: counted once
	audittest.Customer(t, conn, db, h(-10, 0), "c1", "stripe=cus_1")
	audittest.Customer(t, conn, db, h(-10, 0), "c2", "stripe=cus_2")
	audittest.Customer(t, conn, db, h(-10, 0), "c3")
	audittest.Customer(t, conn, db, h(-10, 0), "c4")
	audittest.Identities(t, conn, db, audittest.Identity{At: h(-9, 0), Key: "c4", Kind: "customer", Customer: "c4", Version: 2, MergedInto: "c1"})
	ms := []audittest.Mismatch{
		{At: h(-4, 0), Customer: "c1", Kind: "paid_no_circle_access", System: "circle", State: "open", Detail: "paid, not in Members"},
		{At: h(-3, 0), Customer: "c2", Kind: "circle_access_not_paid", System: "circle", State: "open"},
		{At: h(-2, 0), Customer: "c2", Kind: "circle_access_not_paid", System: "circle", State: "closed"},
		{At: h(-1, 0), Customer: "c3", Kind: "paid_tagged_lead", System: "kit", State: "open", Detail: "tagged lead"},
		{At: h(1, 0), Customer: "c1", Kind: "duplicate_records", System: "kit", State: "open"}, // after the range
	}
	audittest.Mismatches(t, conn, db, ms...)
	audittest.Mismatches(t, conn, db, ms[1])
	var ents []audittest.Entitlement
	for i, l := range []int64{100, 200, 300, 400, 500} {
		ents = append(ents, audittest.Entitlement{At: h(-4, i), Customer: "c1", Version: int64(i + 1), Status: "active", Access: true, LatencyMS: l, IngestedMS: h(-4, i).UnixMilli() - l})
	}
	ents = append(ents, audittest.Entitlement{At: h(-4, 30), Customer: "c9", Version: 1, Status: "none"}) // no ingest time: not a latency
	audittest.Entitlements(t, conn, db, ents...)
	audittest.Sinks(t, conn, db,
		audittest.Sink{At: h(-3, 0), Customer: "c1", ActionID: "a1", Provider: "kit", Action: "tag", Status: "ok"},
		audittest.Sink{At: h(-3, 1), Customer: "c1", ActionID: "a2", Provider: "kit", Action: "tag", Status: "ok"},
		audittest.Sink{At: h(-3, 2), Customer: "c2", ActionID: "a3", Provider: "kit", Action: "untag", Status: "error", HTTPStatus: 500},
		audittest.Sink{At: h(-1, 0), Customer: "c2", ActionID: "a4", Provider: "circle", Action: "remove_access_group", Status: "dlq", HTTPStatus: 422},
		audittest.Sink{At: h(-1, 1), Customer: "c3", ActionID: "a5", Provider: "circle", Action: "add_access_group", Status: "ok"},
	)
	audittest.DeadLetters(t, conn, db,
		audittest.DeadLetter{At: h(-5, 1), Stage: "reconcile", SourceTopic: "lr.raw.stripe", Reason: "no customer", Key: "evt_x"},
		audittest.DeadLetter{At: h(-5, 2), Stage: "reconcile", SourceTopic: "lr.raw.stripe", Reason: "no customer", Key: "evt_y"},
		audittest.DeadLetter{At: h(-5, 3), Stage: "sink.kit", SourceTopic: "lr.entitlements", Reason: "422", Key: "c2"},
	)
}

// Expected results of every ClickHouse panel for seedAudit, row by row:
// times as offsets from T, numbers with 4 significant digits.
var wantSQL = map[string][]string{
	"Events received":                     {"7"},
	"Duplicate rate":                      {"0.2857"},
	"Open mismatches":                     {"2"},
	"Mismatch rate":                       {"0.6667"},
	"Ingest to entitlement p95":           {"500"},
	"Sink errors":                         {"2"},
	"Webhook volume per provider":         {"T-5h stripe 3", "T-3h kit 2", "T-2h stripe 1"},
	"Duplicate rate per provider":         {"T-5h stripe 0.3333", "T-3h kit 0.5", "T-2h stripe 0", "T-1h circle 0"},
	"Dead-lettered provider events":       {"T-5h stripe 2"},
	"Mismatches opened and closed":        {"T-4h open 1", "T-3h open 1", "T-2h closed 1", "T-1h open 1"},
	"Open mismatches by kind":             {"paid_no_circle_access 1", "paid_tagged_lead 1"},
	"Ingest to entitlement latency":       {"T-4h 300 500 500"},
	"Sink actions by provider and status": {"T-3h kit error 1", "T-3h kit ok 2", "T-1h circle dlq 1", "T-1h circle ok 1"},
	"Sink errors by provider":             {"T-3h kit 1", "T-1h circle 1"},
	"Open mismatches (latest 100)":        {"T-1h c3 paid_tagged_lead kit tagged lead", "T-4h c1 paid_no_circle_access circle paid, not in Members"},
}

func format(T time.Time, row []any) string {
	var parts []string
	for _, v := range row {
		switch x := v.(type) {
		case time.Time:
			d := x.Sub(T)
			parts = append(parts, fmt.Sprintf("T%+dh", int(d/time.Hour)))
			if d%time.Hour != 0 {
				parts[len(parts)-1] = "T" + d.String()
			}
		case string:
			parts = append(parts, x)
		default:
			n, ok := Number(x)
			if !ok {
				parts = append(parts, fmt.Sprint(x))
				continue
			}
			parts = append(parts, fmt.Sprintf("%.4g", n))
		}
	}
	return strings.ReplaceAll(strings.Join(parts, " "), "T+0h", "T")
}

// Every SQL query of every dashboard runs on the real ClickHouse (the
// migrated schema) against seeded rows, with the data source's macros
// expanded as the plugin does, and must give exactly the expected rows.
func TestDashboardSQLOnSeededAuditTrail(t *testing.T) {
	t.Parallel()
	cfg, _ := testenv.Migrated(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := chdb.Open(ctx, cfg, cfg.ClickHouseDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	T := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	seedAudit(t, conn, cfg.ClickHouseDatabase, T)

	ds, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	n := 0
	for _, d := range ds {
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				if p.Datasource.Type != ClickHouse {
					continue
				}
				n++
				seen[p.Title] = true
				sql, err := ExpandSQL(tg.RawSQL, T.Add(-6*time.Hour), T, time.Hour)
				if err != nil {
					t.Errorf("%s / %s: %v", d.File, p.Title, err)
					continue
				}
				res, err := Query(ctx, conn, sql)
				if err != nil {
					t.Errorf("%s / %s: %v\n%s", d.File, p.Title, err, sql)
					continue
				}
				var got []string
				for _, row := range res.Rows {
					got = append(got, format(T, row))
				}
				want, ok := wantSQL[p.Title]
				if !ok {
					t.Errorf("%s / %s: no expected result in wantSQL (got %q)", d.File, p.Title, got)
					continue
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("%s / %s:\n got %q\nwant %q", d.File, p.Title, got, want)
				}
				if tg.Format == 0 {
					if _, err := res.TimeSeries(); err != nil {
						t.Errorf("%s / %s: %v", d.File, p.Title, err)
					}
				}
			}
		}
	}
	for title := range wantSQL {
		if !seen[title] {
			t.Errorf("wantSQL has %q, which no ClickHouse panel has", title)
		}
	}
	if n < 10 {
		t.Fatalf("only %d ClickHouse queries found in the dashboards", n)
	}
}

// On an empty audit trail every query still runs and the headline numbers
// read 0, not an error or NaN.
func TestDashboardSQLOnEmptyAuditTrail(t *testing.T) {
	t.Parallel()
	cfg, _ := testenv.Migrated(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := chdb.Open(ctx, cfg, cfg.ClickHouseDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d, err := ByUID("launchready-audit")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			sql, err := ExpandSQL(tg.RawSQL, now.Add(-24*time.Hour), now, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Query(ctx, conn, sql)
			if err != nil {
				t.Errorf("%s: %v", p.Title, err)
				continue
			}
			if p.Type == "stat" {
				if len(res.Rows) != 1 {
					t.Errorf("%s: %d rows, want 1", p.Title, len(res.Rows))
					continue
				}
				if v, ok := Number(res.Rows[0][0]); !ok || v != 0 {
					t.Errorf("%s: %v, want 0", p.Title, res.Rows[0][0])
				}
			}
		}
	}
}
