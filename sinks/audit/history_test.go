package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/schemas"
)

const (
	maria      = "maria.lopez@example.org"
	mariaID    = "c_maria"
	mariaCus   = "cus_TESTcustomer01"
	mariaKit   = "4455667"
	mariaUser  = "8842"
	bob        = "bob@example.org"
	bobID      = "c_bob"
	checkoutID = "evt_1TESTcheckout0001"
	refundID   = "evt_1TESTrefund0001"
)

// script is a customer's history as the other stages would write it:
// Maria pays at checkout (Stripe re-delivers the event), joins Kit, her app
// account is created, an event about her arrives under a Stripe customer
// nobody linked, she is refunded, Circle disagrees for a while and the sink
// fixes it after one failed attempt. Bob is a second customer whose Circle
// mismatch stays open, whose Kit push went to the DLQ, and a guest pays
// without any identity.
type script struct {
	h *harness
	T time.Time // the history's start
}

func (s *script) at(d time.Duration) time.Time { return s.T.Add(d) }

func (s *script) raw(provider, id, typ, objectID string, body []byte, received time.Duration, dup bool) {
	ev := schemas.RawEvent{V: 1, Provider: provider, EventID: id, Type: typ, ObjectID: objectID,
		ProviderTime: s.at(received - 2*time.Second), ReceivedAt: s.at(received), Source: schemas.SourceWebhook,
		Verification: schemas.VerifiedSignature, Duplicate: dup, Body: body}
	if dup {
		first := s.at(0)
		ev.FirstSeenAt = &first
	}
	s.h.produce("raw."+provider, firstOf(objectID, id), "raw/1", ev, s.at(received))
}

func (s *script) identity(id schemas.Identity, d time.Duration) {
	id.V, id.UpdatedAt = 1, s.at(d)
	s.h.produce("identity", id.CustomerID, "identity/1", id, s.at(d))
}

func (s *script) decision(id, cid, rule string, causing []string, d time.Duration) {
	s.h.produce("decisions", cid, "decision/1", schemas.Decision{V: 1, DecisionID: id, CustomerID: cid, Kind: schemas.DecisionEntitlement,
		Rule: rule, After: json.RawMessage(`{"access":true}`), CausingIDs: causing, At: s.at(d), ProviderTime: s.at(d - time.Second)}, s.at(d))
}

func (s *script) entitlement(e schemas.Entitlement, d, ingested, published time.Duration) {
	e.V, e.UpdatedAt = 1, s.at(d)
	if ingested >= 0 {
		e.IngestedAt = s.at(ingested)
	}
	s.h.produce("entitlements", e.CustomerID, "entitlement/1", e, s.at(published))
}

func (s *script) mismatch(cid, kind, system, state string, d time.Duration) {
	s.h.produce("mismatches", cid, "mismatch/1", schemas.Mismatch{V: 1, MismatchID: cid + "|" + kind + "|" + system, CustomerID: cid,
		Kind: kind, System: system, State: state, Detail: "member is in the paid group", At: s.at(d)}, s.at(d))
}

func (s *script) sink(cid, provider, action, target, status string, http, attempts int, version int64, d time.Duration) {
	r := schemas.SinkResult{V: 1, ActionID: fmt.Sprintf("%s|%d|%s|%s|%s", cid, version, provider, action, target), CustomerID: cid,
		Provider: provider, Action: action, Target: target, Status: status, HTTPStatus: http, Attempts: attempts,
		EntitlementVersion: version, At: s.at(d)}
	if status == schemas.SinkError {
		r.Error = "503 Service Unavailable"
	}
	s.h.produce("sink.results", cid, "sink/1", r, s.at(d))
}

func (s *script) rejection(id, provider, reason string, status int, count int64, d time.Duration) {
	s.h.produce("ingest.rejections", provider, "rejection/1", schemas.Rejection{V: 1, RecordID: id, Provider: provider, Reason: reason,
		HTTPStatus: status, Count: count, FirstAt: s.at(d - time.Second), LastAt: s.at(d), RequestIDs: []string{"req_" + id}, Instance: "ingest-1"}, s.at(d))
}

// play writes the whole history; it returns the records written per table.
func (s *script) play(t *testing.T) map[string]int {
	sec := time.Second
	checkout := readProviderFile(t, "payloads/stripe_checkout.session.completed.json")
	refund := readProviderFile(t, "payloads/stripe_charge.refunded.json")
	var kit struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(readProviderFile(t, "payloads/kit_subscriber.created.json"), &kit); err != nil {
		t.Fatal(err)
	}
	s.raw("stripe", checkoutID, "checkout.session.completed", mariaCus, checkout, 0, false)
	s.identity(schemas.Identity{CustomerID: mariaID, Email: maria, Emails: []string{maria}, Stripe: []string{mariaCus}, Version: 1}, 1*sec)
	s.decision("d_checkout", mariaID, "checkout.session.completed: paid checkout grants plan pro", []string{checkoutID}, 1500*time.Millisecond)
	s.entitlement(schemas.Entitlement{CustomerID: mariaID, Email: maria, Plan: "pro", Status: schemas.StatusActive, Access: true,
		SourceEventIDs: []string{checkoutID}, Version: 1}, 1600*time.Millisecond, 0, 2*sec) // latency 2000 ms
	s.sink(mariaID, "circle", "add_access_group", "pro-members", schemas.SinkOK, 200, 1, 1, 3*sec)
	s.raw("stripe", checkoutID, "checkout.session.completed", mariaCus, checkout, 5*sec, true)
	s.raw("kit", "3f1c2a9e-0b7d-4c55-9e21-5a6b7c8d9e01", "subscriber.created", mariaKit, kit.Events[0], 6*sec, false)
	s.identity(schemas.Identity{CustomerID: mariaID, UserID: mariaUser, Email: maria, Emails: []string{maria}, Stripe: []string{mariaCus},
		Kit: []string{mariaKit}, Version: 2}, 7*sec)
	s.h.produce("cdc.public.users", `{"id":8842}`, "cdc/1", map[string]any{"v": 1, "op": "c", "schema": "public", "table": "users",
		"key": map[string]any{"id": 8842}, "after": map[string]any{"id": 8842, "email": maria, "password_hash": "$2b$secret"},
		"source": map[string]any{"lsn": "0/16B3748", "commit_lsn": "0/16B3800", "commit_time": s.at(8 * sec)}}, s.at(8*sec))
	s.raw("stripe", "evt_unlinked", "customer.updated", "cus_UNLINKED",
		[]byte(`{"id":"evt_unlinked","type":"customer.updated","data":{"object":{"id":"cus_UNLINKED","object":"customer","email":"Maria.Lopez@example.org","name":"Maria L"}}}`), 30*sec, false)
	s.raw("stripe", refundID, "charge.refunded", mariaCus, refund, 60*sec, false)
	// The reconciler names its causes by dedup key (provider:event id).
	s.decision("d_refund", mariaID, "charge.refunded: full refund revokes access", []string{"stripe:" + refundID}, 61*sec)
	s.entitlement(schemas.Entitlement{CustomerID: mariaID, Email: maria, Plan: "pro", Status: schemas.StatusRefunded, Access: false,
		SourceEventIDs: []string{checkoutID, refundID}, Version: 2}, 61500*time.Millisecond, 60*sec, 61500*time.Millisecond) // latency 1500 ms
	s.mismatch(mariaID, schemas.MismatchAccessNotPaid, "circle", "open", 62*sec)
	s.sink(mariaID, "circle", "remove_access_group", "pro-members", schemas.SinkError, 503, 1, 2, 63*sec)
	s.sink(mariaID, "circle", "remove_access_group", "pro-members", schemas.SinkOK, 200, 2, 2, 64*sec)
	s.mismatch(mariaID, schemas.MismatchAccessNotPaid, "circle", "closed", 65*sec)

	// Bob, and a guest nobody knows.
	s.raw("stripe", "evt_bob", "invoice.paid", "cus_BOB", []byte(`{"data":{"object":{"customer":"cus_BOB","customer_email":"bob@example.org"}}}`), 10*sec, false)
	s.identity(schemas.Identity{CustomerID: bobID, Email: bob, Emails: []string{bob}, Stripe: []string{"cus_BOB"}, Version: 1}, 11*sec)
	s.entitlement(schemas.Entitlement{CustomerID: bobID, Email: bob, Status: schemas.StatusActive, Access: true, Version: 1}, 12*sec, 11500*time.Millisecond, 12*sec) // latency 500 ms
	s.mismatch(bobID, schemas.MismatchPaidNoAccess, "circle", "open", 13*sec)
	s.sink(bobID, "kit", "tag", "customer", schemas.SinkDLQ, 422, 3, 1, 14*sec)
	s.h.produce("dlq", bobID, "dead_letter/1", schemas.DeadLetter{V: 1, Stage: "sink", Topic: s.h.cfg.Topic("entitlements"), Key: bobID,
		Reason: "kit answered 422", Record: json.RawMessage(`{"customer_id":"c_bob","card":{"last4":"4242"}}`), At: s.at(14 * sec)}, s.at(14*sec))
	s.raw("stripe", "evt_guest", "charge.succeeded", "", []byte(`{"data":{"object":{"object":"charge","billing_details":{"email":"guest@example.org","name":"G"}}}}`), 20*sec, false)

	// Refused deliveries: ingest re-sends one count after an unclear Kafka
	// failure (same record id), and two were refused half an hour before.
	s.rejection("ingest-1-7", "stripe", "signature_mismatch", 401, 3, 25*sec)
	s.rejection("ingest-1-7", "stripe", "signature_mismatch", 401, 3, 25*sec)
	s.rejection("ingest-1-8", "kit", "bad_json", 400, 1, 26*sec)
	s.rejection("ingest-1-2", "stripe", "signature_mismatch", 401, 2, -30*time.Minute)

	return map[string]int{"raw_events": 7, "identity_links": 3, "decisions": 2, "entitlements": 3, "mismatches": 3, "sink_actions": 4, "cdc_changes": 1, "dlq": 1,
		"rejected_webhooks": 3}
}

// TestScriptedHistory writes a customer's history into Kafka, lets the
// writer crash once between a ClickHouse insert and its offset commit, and
// checks that the re-delivered batch changed nothing: the timeline tells the
// history in order with the duplicate marked, stats count exactly what the
// script did, and why answers from the latest decision.
func TestScriptedHistory(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	cdcTopic := h.cfg.Topic(schemas.CDCTopic("public", "users"))
	ensureTopic(t, h, cdcTopic)

	s := &script{h: h, T: time.Now().Add(-2 * time.Hour).Truncate(time.Second)}
	want := s.play(t)
	// Background merges would collapse re-inserted rows at a time of their
	// choosing; stopped, the duplicates are certainly there when the
	// queries run, so the queries' own deduplication is what is tested.
	merges := func(verb string) {
		for table := range want {
			if err := h.conn.Exec(ctx, "SYSTEM "+verb+" MERGES "+h.cfg.ClickHouseDatabase+"."+table); err != nil {
				t.Fatalf("%s merges: %v", verb, err)
			}
		}
	}
	merges("STOP")

	// Writer A stores its first batch, then "crashes" before committing.
	var (
		mu       sync.Mutex
		inserted = map[string]int{}
	)
	count := func(rows map[string]int) {
		mu.Lock()
		defer mu.Unlock()
		for k, v := range rows {
			inserted[k] += v
		}
	}
	// Writer A "crashes" between the insert of the first batch holding raw
	// events and its offset commit.
	errCrash := errors.New("crash between insert and commit")
	crashed := make(chan struct{})
	var once sync.Once
	a := h.start(Options{MaxWait: 2 * time.Second}, func(w *Writer) {
		w.afterInsert = func(_ int, rows map[string]int) error {
			count(rows)
			if rows["raw_events"] == 0 {
				return nil
			}
			once.Do(func() { close(crashed) })
			return errCrash
		}
	})
	select {
	case <-crashed:
	case <-time.After(60 * time.Second):
		t.Fatal("writer A stored nothing")
	}
	if err := a.stop(); err != nil {
		t.Fatalf("writer A: %v", err)
	}
	mu.Lock()
	firstBatch := inserted["raw_events"] + inserted["decisions"] + inserted["entitlements"] + inserted["sink_actions"]
	mu.Unlock()
	if firstBatch == 0 {
		t.Fatal("writer A stored nothing before its crash")
	}

	// Writer B, same consumer group, reads the uncommitted batch again.
	b := h.start(Options{MaxWait: 200 * time.Millisecond}, func(w *Writer) {
		w.afterInsert = func(_ int, rows map[string]int) error { count(rows); return nil }
	})
	h.waitCommitted(b, 60*time.Second)
	h.waitFor(time.Second, want)
	mu.Lock()
	total := inserted["raw_events"] + inserted["identity_links"] + inserted["decisions"] + inserted["entitlements"] +
		inserted["mismatches"] + inserted["sink_actions"] + inserted["cdc_changes"] + inserted["dlq"] + inserted["rejected_webhooks"]
	mu.Unlock()
	distinct := 0
	for _, n := range want {
		distinct += n
	}
	if total <= distinct {
		t.Fatalf("%d rows inserted for %d records: the crashed batch was not re-delivered, the test proves nothing", total, distinct)
	}

	var physical uint64
	if err := h.conn.QueryRow(ctx, "SELECT count() FROM "+h.cfg.ClickHouseDatabase+".raw_events").Scan(&physical); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	rawInserted := inserted["raw_events"]
	mu.Unlock()
	if int(physical) != rawInserted || physical <= uint64(want["raw_events"]) {
		t.Fatalf("raw_events holds %d rows, %d inserted for %d events: the re-delivery is not in the table", physical, rawInserted, want["raw_events"])
	}

	check := func(stage string) {
		t.Run(stage+"/timeline", func(t *testing.T) { checkTimeline(t, h, s) })
		t.Run(stage+"/stats", func(t *testing.T) { checkStats(t, h, s) })
		t.Run(stage+"/why", func(t *testing.T) { checkWhy(t, h, s) })
	}
	check("before merge")
	merges("START")

	// The engine collapses the re-inserted rows on their sorting key (FINAL
	// applies the merge the background will eventually do).
	for table := range want {
		var rows uint64
		if err := h.conn.QueryRow(ctx, "SELECT count() FROM "+h.cfg.ClickHouseDatabase+"."+table+" FINAL").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		wantRows := want[table]
		if table == "identity_links" {
			wantRows = 11 // a row per linked key of each identity version
		}
		if int(rows) != wantRows {
			t.Errorf("%s holds %d rows after merging, want %d", table, rows, wantRows)
		}
	}
	for table := range want {
		_ = h.conn.Exec(ctx, "OPTIMIZE TABLE "+h.cfg.ClickHouseDatabase+"."+table+" FINAL")
	}
	check("after merge")
}

func checkTimeline(t *testing.T, h *harness, s *script) {
	ctx := context.Background()
	db := h.cfg.ClickHouseDatabase
	for _, q := range []TimelineQuery{{Email: " Maria.Lopez@Example.org "}, {Customer: mariaID}, {Customer: mariaKit}} {
		res, err := Timeline(ctx, h.conn, db, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.CustomerIDs) != 1 || res.CustomerIDs[0] != mariaID {
			t.Fatalf("%+v: customers %v, want [%s]", q, res.CustomerIDs, mariaID)
		}
		var got []string
		for _, e := range res.Entries {
			line := e.At.Sub(s.T).String() + " " + e.Kind + " " + e.What
			if e.Status != "" {
				line += " [" + e.Status + "]"
			}
			got = append(got, line)
		}
		want := []string{
			"0s event checkout.session.completed [received]",
			"1s identity customer record created",
			"1s identity linked email " + maria,
			"1s identity linked stripe " + mariaCus,
			"1.5s decision checkout.session.completed: paid checkout grants plan pro [entitlement]",
			"1.6s entitlement active (plan pro) [access]",
			"3s sink add_access_group pro-members [ok]",
			"5s event checkout.session.completed [duplicate]",
			"6s event subscriber.created [received]",
			"7s identity linked kit " + mariaKit,
			"7s identity linked user " + mariaUser,
			"8s change insert",
			"30s event customer.updated [received]",
			"1m0s event charge.refunded [received]",
			"1m1s decision charge.refunded: full refund revokes access [entitlement]",
			"1m1.5s entitlement refunded (plan pro) [no access]",
			"1m2s mismatch " + schemas.MismatchAccessNotPaid + " [open]",
			"1m3s sink remove_access_group pro-members [error]",
			"1m4s sink remove_access_group pro-members [ok]",
			"1m5s mismatch " + schemas.MismatchAccessNotPaid + " [closed]",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("timeline of %+v:\n%s\n\nwant:\n%s", q, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, e := range res.Entries {
			if e.Kind == EntryEvent && e.Duplicate != (e.At.Equal(s.at(5*time.Second))) {
				t.Errorf("event at %s: duplicate = %v", e.At.Sub(s.T), e.Duplicate)
			}
		}
	}
	// Bob's story holds none of Maria's.
	res, err := Timeline(ctx, h.conn, db, TimelineQuery{Email: bob})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Entries {
		if e.Customer == mariaID || e.Customer == mariaCus {
			t.Errorf("Bob's timeline holds %+v", e)
		}
	}
	if len(res.Entries) != 8 { // event, 3 links, entitlement, mismatch, sink, dead letter
		t.Errorf("Bob's timeline has %d entries, want 8: %+v", len(res.Entries), res.Entries)
	}
	// A window keeps to it.
	res, err = Timeline(ctx, h.conn, db, TimelineQuery{Email: maria, Since: s.at(59 * time.Second), Until: s.at(62 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != 3 || res.Entries[0].ID != refundID {
		t.Errorf("windowed timeline: %+v", res.Entries)
	}
	// An email nobody linked still finds what names it.
	res, err = Timeline(ctx, h.conn, db, TimelineQuery{Email: "guest@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.CustomerIDs) != 0 || len(res.Entries) != 1 || res.Entries[0].ID != "evt_guest" {
		t.Errorf("guest timeline: %+v", res)
	}
}

func checkStats(t *testing.T, h *harness, s *script) {
	res, err := Stats(context.Background(), h.conn, h.cfg.ClickHouseDatabase, StatsQuery{Since: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(res.Providers)
	wantJSON, _ := json.Marshal([]ProviderStats{
		{Provider: "kit", Received: 1, Webhooks: 1, Rejected: 1, RejectedByReason: map[string]int64{"bad_json": 1}, WebhookFailureRate: 1.0 / 2},
		{Provider: "stripe", Received: 6, Duplicates: 1, DuplicateRate: 1.0 / 6, Webhooks: 6, Rejected: 5,
			RejectedByReason: map[string]int64{"signature_mismatch": 5}, WebhookFailureRate: 5.0 / 11},
	})
	if string(got) != string(wantJSON) {
		t.Errorf("providers:\n got %s\nwant %s", got, wantJSON)
	}
	m := res.Mismatches
	if m.Open != 1 || m.Customers != 2 || m.Rate != 0.5 || m.CustomersOpen != 1 || m.Opened != 2 || m.Closed != 1 || m.OpenByKind[schemas.MismatchPaidNoAccess] != 1 {
		t.Errorf("mismatches = %+v", m)
	}
	l := res.Latency
	if l.Count != 3 || l.P50MS == nil || *l.P50MS != 1500 || *l.P95MS != 2000 {
		t.Errorf("latency = count %d p50 %v p95 %v, want 3, 1500, 2000", l.Count, ptrVal(l.P50MS), ptrVal(l.P95MS))
	}
	sinks, _ := json.Marshal(res.Sinks)
	wantSinks := `[{"provider":"circle","succeeded":2,"failed":1,"by_status":{"error":1,"ok":2}},{"provider":"kit","succeeded":0,"failed":1,"by_status":{"dlq":1}}]`
	if string(sinks) != wantSinks {
		t.Errorf("sinks:\n got %s\nwant %s", sinks, wantSinks)
	}
	if len(res.DeadLetters) != 1 || res.DeadLetters["sink"] != 1 {
		t.Errorf("dead letters = %v", res.DeadLetters)
	}
	// A window before the script sees only the earlier refusals.
	res, err = Stats(context.Background(), h.conn, h.cfg.ClickHouseDatabase, StatsQuery{Since: s.at(-time.Hour), Until: s.at(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Providers) != 1 || res.Providers[0].Rejected != 2 || res.Providers[0].WebhookFailureRate != 1 || res.Providers[0].Received != 0 ||
		res.Latency.Count != 0 || res.Latency.P50MS != nil {
		t.Errorf("window before the script: %+v", res)
	}
}

func ptrVal(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func checkWhy(t *testing.T, h *harness, s *script) {
	a, err := Why(context.Background(), h.conn, h.cfg.ClickHouseDatabase, WhyQuery{Email: maria})
	if err != nil {
		t.Fatal(err)
	}
	if a.CustomerID != mariaID || a.Access || a.Entitlement == nil || a.Entitlement.Version != 2 || a.Decision == nil || a.Decision.ID != "d_refund" {
		t.Fatalf("answer = %+v", a)
	}
	if len(a.Causes) != 1 || a.Causes[0].ID != refundID || a.Causes[0].Duplicate {
		t.Errorf("causes = %+v", a.Causes)
	}
	if len(a.OpenMismatches) != 0 || len(a.Sinks) != 1 || a.Sinks[0].Status != "ok" {
		t.Errorf("mismatches %+v sinks %+v", a.OpenMismatches, a.Sinks)
	}
	for _, part := range []string{"has NO access now", "status refunded", "charge.refunded: full refund revokes access", "stripe charge.refunded " + refundID + " received", "No mismatch is open", "remove_access_group pro-members ok"} {
		if !strings.Contains(a.Text, part) {
			t.Errorf("answer lacks %q:\n%s", part, a.Text)
		}
	}
	b, err := Why(context.Background(), h.conn, h.cfg.ClickHouseDatabase, WhyQuery{Email: bob})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Access || b.Decision != nil || len(b.OpenMismatches) != 1 || !strings.Contains(b.Text, "HAS access") || !strings.Contains(b.Text, schemas.MismatchPaidNoAccess) {
		t.Errorf("Bob's answer: %+v", b)
	}
	g, err := Why(context.Background(), h.conn, h.cfg.ClickHouseDatabase, WhyQuery{Email: "nobody@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if g.CustomerID != "" || !strings.Contains(g.Text, "No customer is linked") {
		t.Errorf("unknown email: %+v", g)
	}
}
