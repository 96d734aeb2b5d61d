package audit

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/redact"
	"github.com/launchready/launchready/schemas"
)

const testPrefix = "lr.test."

func newTestDecoder(t testing.TB) *decoder {
	t.Helper()
	r, err := NewRedactor(DefaultDrop)
	if err != nil {
		t.Fatal(err)
	}
	return newDecoder(r, testPrefix)
}

var t0 = time.Date(2026, 3, 2, 10, 15, 0, 123_000_000, time.UTC)

func record(t testing.TB, topic string, v any, at time.Time, offset int64) kafka.Message {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Topic: testPrefix + topic, Partition: 1, Offset: offset, Value: b, Time: at}
}

func decodeOne(t testing.TB, m kafka.Message) *batch {
	t.Helper()
	b := &batch{}
	newTestDecoder(t).add(b, &m)
	checkColumns(t, b)
	return b
}

// checkColumns fails when a table's columns differ in length: the insert
// would be refused.
func checkColumns(t testing.TB, b *batch) {
	t.Helper()
	for _, tb := range b.tables() {
		cols := tb.columns()
		n := cols[0].len()
		for _, c := range cols {
			if c.len() != n {
				t.Fatalf("%s.%s has %d values, %s has %d", tb.name(), c.name, c.len(), cols[0].name, n)
			}
		}
	}
}

func stripeCheckout(t testing.TB) json.RawMessage {
	return readProviderFile(t, "payloads/stripe_checkout.session.completed.json")
}

func TestDecodeRawStripe(t *testing.T) {
	t.Parallel()
	ev := schemas.RawEvent{V: 1, Provider: "stripe", EventID: "evt_1TESTcheckout0001", Type: "checkout.session.completed",
		ProviderTime: t0.Add(-time.Minute), ReceivedAt: t0, Source: "webhook", Verification: "signature", Body: stripeCheckout(t)}
	b := decodeOne(t, record(t, "raw.stripe", ev, t0.Add(time.Millisecond), 7))
	r := &b.raw
	if len(r.recordID) != 1 {
		t.Fatalf("%d raw rows, want 1", len(r.recordID))
	}
	if got, want := r.recordID[0], "stripe:evt_1TESTcheckout0001@"+itoa(t0.UnixNano()); got != want {
		t.Errorf("record_id = %s, want %s", got, want)
	}
	if r.customerKey[0] != "cus_TESTcustomer01" || r.providerCustomer[0] != "cus_TESTcustomer01" {
		t.Errorf("customer_key = %q, provider_customer = %q, want the body's customer", r.customerKey[0], r.providerCustomer[0])
	}
	if !slices.Equal(r.emails[0], []string{"maria.lopez@example.org"}) {
		t.Errorf("emails = %v", r.emails[0])
	}
	if strings.Contains(r.payload[0], "Maria Lopez") || !strings.Contains(r.payload[0], `"amount_total":4900`) {
		t.Errorf("payload not redacted as expected: %s", r.payload[0])
	}
	if r.atMS[0] != t0.UnixMilli() || r.kafkaMS[0] != t0.Add(time.Millisecond).UnixMilli() || r.offset[0] != 7 {
		t.Errorf("at_ms %d kafka_ms %d offset %d", r.atMS[0], r.kafkaMS[0], r.offset[0])
	}
	if !slices.Equal(b.keys.key, []string{"maria.lopez@example.org"}) || b.keys.customerKey[0] != "cus_TESTcustomer01" {
		t.Errorf("audit_keys = %v → %v, want the email indexed", b.keys.key, b.keys.customerKey)
	}
}

func TestDecodeRawCustomerKey(t *testing.T) {
	t.Parallel()
	var kit struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(readProviderFile(t, "payloads/kit_subscriber.created.json"), &kit); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, provider, objectID string
		body                     string
		want                     string
	}{
		{"object id wins", "stripe", "cus_OBJ", `{"data":{"object":{"customer":"cus_BODY"}}}`, "cus_OBJ"},
		{"stripe customer object", "stripe", "", `{"data":{"object":{"id":"cus_SELF","object":"customer","email":"A@x.io"}}}`, "cus_SELF"},
		{"kit subscriber id", "kit", "", string(kit.Events[0]), "4455667"},
		{"circle member", "circle", "", `{"id":31337,"email":"m@x.io"}`, "31337"},
		{"circle push", "circle", "", `{"community_member_id":31337,"email":"m@x.io"}`, "31337"},
		{"email when nothing else", "stripe", "", `{"data":{"object":{"object":"charge","billing_details":{"email":" Guest@X.io "}}}}`, "guest@x.io"},
		{"nothing at all", "stripe", "", `{"data":{}}`, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := schemas.RawEvent{V: 1, Provider: tt.provider, EventID: "e" + itoa(int64(i)), ObjectID: tt.objectID, ReceivedAt: t0, Body: json.RawMessage(tt.body)}
			b := decodeOne(t, record(t, "raw."+tt.provider, ev, t0, 1))
			if len(b.raw.customerKey) != 1 || b.raw.customerKey[0] != tt.want {
				t.Errorf("customer_key = %v, want %q (dlq: %v)", b.raw.customerKey, tt.want, b.dlq.reason)
			}
		})
	}
}

func TestDecodeIdentityLinks(t *testing.T) {
	t.Parallel()
	id := schemas.Identity{V: 1, CustomerID: "c_1", UserID: "42", Email: "maria@x.io", Emails: []string{"maria@x.io", "Old@X.io"},
		Stripe: []string{"cus_1"}, Kit: []string{"4455667"}, Circle: []string{"31337"}, Version: 3, UpdatedAt: t0}
	b := decodeOne(t, record(t, "identity", id, t0, 1))
	var got []string
	for i := range b.identity.key {
		got = append(got, b.identity.kind[i]+":"+b.identity.key[i])
		if b.identity.recordID[i] != "c_1@v3" || b.identity.version[i] != 3 {
			t.Errorf("row %d: record_id %s version %d", i, b.identity.recordID[i], b.identity.version[i])
		}
	}
	want := []string{"customer:c_1", "email:maria@x.io", "email:old@x.io", "user:42", "stripe:cus_1", "circle:31337", "kit:4455667"}
	if !slices.Equal(got, want) {
		t.Errorf("links = %v, want %v", got, want)
	}
}

func TestDecodeEntitlementLatency(t *testing.T) {
	t.Parallel()
	e := schemas.Entitlement{V: 1, CustomerID: "c_1", Status: "active", Access: true, Version: 2, UpdatedAt: t0.Add(time.Second), IngestedAt: t0}
	tests := []struct {
		name      string
		kafkaTime time.Time
		ingested  time.Time
		want      int64
	}{
		{"kafka timestamp", t0.Add(1500 * time.Millisecond), t0, 1500},
		{"updated_at without one", time.Time{}, t0, 1000},
		{"unknown ingest time", t0.Add(time.Second), time.Time{}, 0},
		{"clock skew is not negative", t0.Add(-time.Second), t0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := e
			e.IngestedAt = tt.ingested
			b := decodeOne(t, record(t, "entitlements", e, tt.kafkaTime, 1))
			if got := b.entitlements.latencyMS; len(got) != 1 || got[0] != tt.want {
				t.Errorf("latency_ms = %v, want %d", got, tt.want)
			}
		})
	}
}

func TestDecodeCDC(t *testing.T) {
	t.Parallel()
	c := map[string]any{
		"v": 1, "op": "u", "schema": "public", "table": "users",
		"key":    map[string]any{"id": 42},
		"before": map[string]any{"id": 42, "email": "old@x.io", "password_hash": "$2b$abc", "plan": "pro"},
		"after":  map[string]any{"id": 42, "email": "New@X.io", "password_hash": "$2b$def", "plan": "pro"},
		"source": map[string]any{"lsn": "0/16B3748", "commit_lsn": "0/16B3800", "commit_time": t0},
	}
	b := decodeOne(t, record(t, "cdc.public.users", c, t0, 1))
	r := &b.cdc
	if len(r.recordID) != 1 {
		t.Fatalf("%d cdc rows (dlq %v)", len(r.recordID), b.dlq.reason)
	}
	if r.customerKey[0] != "42" || r.recordID[0] != `cdc:public.users:0/16B3748:u:{"id":42}` {
		t.Errorf("customer_key %q record_id %q", r.customerKey[0], r.recordID[0])
	}
	if !slices.Equal(r.changed[0], []string{"email", "password_hash"}) {
		t.Errorf("changed = %v", r.changed[0])
	}
	if strings.Contains(r.before[0]+r.after[0], "$2b$") {
		t.Errorf("password hash stored: %s %s", r.before[0], r.after[0])
	}
	if !slices.Equal(r.emails[0], []string{"old@x.io", "new@x.io"}) {
		t.Errorf("emails = %v", r.emails[0])
	}
	// Rows of one snapshot share an LSN; their keys tell them apart.
	snap := func(id int) map[string]any {
		return map[string]any{"v": 1, "op": "r", "schema": "public", "table": "users", "key": map[string]any{"id": id},
			"after": map[string]any{"id": id}, "source": map[string]any{"lsn": "0/AA", "snapshot": true}}
	}
	s1, s2 := decodeOne(t, record(t, "cdc.public.users", snap(1), t0, 3)), decodeOne(t, record(t, "cdc.public.users", snap(2), t0, 4))
	if s1.cdc.recordID[0] == s2.cdc.recordID[0] || s1.cdc.customerKey[0] != "1" {
		t.Errorf("snapshot rows: record ids %q and %q, customer key %q", s1.cdc.recordID[0], s2.cdc.recordID[0], s1.cdc.customerKey[0])
	}
	// A row of another table belongs to its user_id.
	c2 := map[string]any{"v": 1, "op": "c", "schema": "public", "table": "orders", "key": map[string]any{"id": 7},
		"after": map[string]any{"id": 7, "user_id": "42"}, "source": map[string]any{"lsn": "0/1"}}
	if b := decodeOne(t, record(t, "cdc.public.orders", c2, t0, 2)); b.cdc.customerKey[0] != "42" {
		t.Errorf("orders row customer_key = %q, want its user_id", b.cdc.customerKey[0])
	}
}

func TestDecodeRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, topic string
		value       string
		reason      string
	}{
		{"newer envelope", "raw.stripe", `{"v":2,"provider":"stripe","event_id":"evt_1"}`, "version 2"},
		{"not JSON", "decisions", `not json`, "undecodable"},
		{"raw without id", "raw.kit", `{"v":1,"provider":"kit"}`, "without provider or event_id"},
		{"identity without customer", "identity", `{"v":1,"email":"a@b.c"}`, "without customer_id"},
		{"unknown topic", "reconcile.seen", `{}`, "holds no audit record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := kafka.Message{Topic: testPrefix + tt.topic, Partition: 2, Offset: 9, Value: []byte(tt.value), Time: t0}
			b := decodeOne(t, m)
			rows := b.rows()
			if len(rows) != 1 || rows["dlq"] != 1 {
				t.Fatalf("rows = %v, want one dlq row", rows)
			}
			if b.dlq.stage[0] != "audit" || !strings.Contains(b.dlq.reason[0], tt.reason) || b.dlq.recordID[0] != "audit:"+m.Topic+"/2/9" {
				t.Errorf("dlq row: stage %q reason %q record_id %q", b.dlq.stage[0], b.dlq.reason[0], b.dlq.recordID[0])
			}
		})
	}
}

func TestTopicKinds(t *testing.T) {
	t.Parallel()
	d := newTestDecoder(t)
	for topic, want := range map[string]kind{
		"lr.test.raw.stripe": kindRaw, "lr.test.raw.circle": kindRaw, "lr.test.cdc.public.users": kindCDC,
		"lr.test.identity": kindIdentity, "lr.test.entitlements": kindEntitlement, "lr.test.decisions": kindDecision,
		"lr.test.mismatches": kindMismatch, "lr.test.sink.results": kindSink, "lr.test.dlq": kindDLQ,
		"lr.test.reconcile.seen": kindNone, "lr.raw.stripe": kindNone, "lr.test.cdcx": kindNone,
	} {
		if got := d.kindOf(topic); got != want {
			t.Errorf("kindOf(%s) = %d, want %d", topic, got, want)
		}
	}
}

func TestBatchMerge(t *testing.T) {
	t.Parallel()
	d := newTestDecoder(t)
	a, b := &batch{}, &batch{}
	for i := 0; i < 3; i++ {
		m := record(t, "mismatches", schemas.Mismatch{V: 1, MismatchID: "m" + itoa(int64(i)), State: "open", At: t0}, t0, int64(i))
		d.add(a, &m)
		m2 := record(t, "sink.results", schemas.SinkResult{V: 1, ActionID: "a", Status: "ok", At: t0}, t0, int64(i))
		d.add(b, &m2)
	}
	a.merge(b)
	checkColumns(t, a)
	if got := a.rows(); got["mismatches"] != 3 || got["sink_actions"] != 3 {
		t.Errorf("rows after merge = %v", got)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	lo, hi := 100*time.Millisecond, time.Second
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := backoff(i+1, lo, hi); got != w*time.Millisecond {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
}

// FuzzDecode feeds any bytes to every topic's decoder: it must not panic,
// must produce at least one row (the record, or its dlq row), and keep every
// table's columns the same length.
func FuzzDecode(f *testing.F) {
	f.Add("raw.stripe", []byte(`{"v":1,"provider":"stripe","event_id":"evt_1","received_at":"2026-03-02T10:15:00Z","body":{"data":{"object":{"customer":"cus_1","email":"a@b.c"}}}}`))
	f.Add("cdc.public.users", []byte(`{"v":1,"op":"u","schema":"public","table":"users","key":{"id":1},"before":{"email":"a@b.c"},"after":{"email":"d@e.f"},"source":{"lsn":"0/1"}}`))
	f.Add("identity", []byte(`{"v":1,"customer_id":"c","emails":["a@b.c"],"stripe_customer_ids":["cus_1"],"version":1}`))
	f.Add("entitlements", []byte(`{"v":1,"customer_id":"c","status":"active","access":true,"version":1,"ingested_at":"2026-03-02T10:15:00Z"}`))
	f.Add("decisions", []byte(`{"v":1,"decision_id":"d","customer_id":"c","rule":"r","after":{"access":true},"causing_event_ids":["evt_1"]}`))
	f.Add("mismatches", []byte(`{"v":1,"mismatch_id":"m","state":"open"}`))
	f.Add("sink.results", []byte(`{"v":1,"action_id":"a","status":"ok","http_status":200}`))
	f.Add("dlq", []byte(`{"v":1,"stage":"sink","record":{"customer_id":"c","card":{"number":"4242424242424242"}}}`))
	f.Add("raw.kit", []byte(`{"v":1,"provider":"kit","event_id":"e","body":{"note":"4242 4242 4242 4242","n":4242424242424242,"4242424242424242":1}}`))
	d := newTestDecoder(f)
	f.Fuzz(func(t *testing.T, topic string, value []byte) {
		m := kafka.Message{Topic: testPrefix + topic, Value: value, Time: t0}
		b := &batch{}
		d.add(b, &m)
		checkColumns(t, b)
		if len(b.rows()) == 0 {
			t.Fatalf("record of %s produced no row", topic)
		}
		// Stored documents (not the envelope's own ids) hold nothing the
		// redactor would still remove: no card number (a Luhn-valid run of
		// 15 to 19 digits, keys included), no credential.
		docs := [][]string{b.raw.payload, b.cdc.before, b.cdc.after, b.cdc.rowKey, b.decisions.before, b.decisions.after, b.dlq.record}
		for _, col := range docs {
			for _, v := range col {
				if redact.String(v) != v {
					t.Fatalf("card number or credential stored: %s", v)
				}
			}
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// rawCanonical reports whether rec is an object whose field names are
// exactly the RawEvent JSON names where they match one case-insensitively
// (encoding/json folds case; the fast decoder does not need to).
func rawCanonical(rec []byte) bool {
	var fields map[string]json.RawMessage
	if json.Unmarshal(rec, &fields) != nil {
		return false
	}
	names := []string{"v", "provider", "event_id", "type", "object_id", "provider_time", "received_at", "source", "verification", "request_id", "duplicate", "first_seen_at", "body"}
	for k := range fields {
		for _, n := range names {
			if k != n && strings.EqualFold(k, n) {
				return false
			}
		}
	}
	return true
}

// checkRawDecode compares the one-pass RawEvent decoder with encoding/json
// followed by Redact.
func checkRawDecode(t *testing.T, r *Redactor, rec []byte) {
	t.Helper()
	var f rawFacts
	got, payload, err := decodeRawEvent(rec, r, &f, nil)
	if err == nil && !json.Valid(rec) {
		t.Fatalf("invalid JSON accepted: %q", rec)
	}
	var want schemas.RawEvent
	if json.Unmarshal(rec, &want) != nil || err != nil || !rawCanonical(rec) {
		return
	}
	var wantPayload []byte
	if len(want.Body) > 0 && string(want.Body) != "null" {
		if wantPayload, err = r.Redact(want.Body); err != nil {
			t.Fatalf("Redact(body): %v", err)
		}
	}
	if string(payload) != string(wantPayload) {
		t.Fatalf("payload of %q:\n got %s\nwant %s", rec, payload, wantPayload)
	}
	want.Body = nil
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Fatalf("decode of %q:\n got %s\nwant %s", rec, gj, wj)
	}
}

func TestDecodeRawEventMatchesJSON(t *testing.T) {
	t.Parallel()
	r, _ := NewRedactor(DefaultDrop)
	first := t0.Add(-time.Hour)
	full, _ := json.Marshal(schemas.RawEvent{V: 1, Provider: "stripe", EventID: "evt_\u00e9\"x", Type: "charge.refunded", ObjectID: "cus_1",
		ProviderTime: t0, ReceivedAt: t0.Add(time.Second), Source: "webhook", Verification: "signature", RequestID: "req_1",
		Duplicate: true, FirstSeenAt: &first, Body: stripeCheckout(t)})
	for _, rec := range []string{
		string(full),
		`{"body":{"data":{"object":{"customer":"cus_9","name":"N"}}},"provider":"stripe","event_id":"e","v":1}`,
		`{"v":1,"provider":"kit","event_id":"e","body":null,"first_seen_at":null,"duplicate":false,"unknown":{"a":[1,2]}}`,
		`{"v":1,"provider":"circle","event_id":"e"}`,
		` { "v" : 1 , "provider" : "kit" , "event_id" : "e" , "body" : [ 1 , { "card" : 2 } ] } `,
		`{"body":{"a":1},"provider":"kit","event_id":"e","body":{"b":2}}`,
		`{"provider":"kit","body":{"a":1},"event_id":"e","body":{"b":2}}`,
	} {
		checkRawDecode(t, r, []byte(rec))
	}
	for _, bad := range []string{`{"v":"1"}`, `{"v":1.5}`, `{"duplicate":1}`, `{"received_at":"yesterday"}`, `{"body":{}`, `[]`, `{"v":1} x`} {
		if _, _, err := decodeRawEvent([]byte(bad), r, &rawFacts{}, map[string]bool{}); err == nil {
			t.Errorf("decodeRawEvent(%s) accepted it", bad)
		}
	}
}

func FuzzDecodeRawEvent(f *testing.F) {
	f.Add([]byte(`{"v":1,"provider":"stripe","event_id":"evt_1","received_at":"2026-03-02T10:15:00.5Z","duplicate":true,"first_seen_at":"2026-03-02T10:14:00Z","body":{"data":{"object":{"customer":"cus_1","email":"A@b.c","card":{"n":1}}}}}`))
	f.Add([]byte(`{"body":[1,"x",{"address":null}],"provider":"kit","event_id":"e"}`))
	r, _ := NewRedactor(DefaultDrop)
	f.Fuzz(func(t *testing.T, rec []byte) { checkRawDecode(t, r, rec) })
}
