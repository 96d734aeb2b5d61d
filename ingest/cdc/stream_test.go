package cdc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/schemas"
)

// TestStreamChanges: rows present at start arrive as op r; inserts, updates
// and deletes across three tables (default identity, identity full, a TOASTed
// column) arrive with the right op, before and after, in order per key; a
// key change ends the old key and starts the new one; a column added
// mid-stream appears; an unchanged TOAST value is marked, never null.
func TestStreamChanges(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	users, sessions, docs := f.table("users"), f.table("sessions"), f.table("docs")
	f.exec(`CREATE TABLE ` + users + ` (id bigint PRIMARY KEY, email text NOT NULL, name text, active boolean,
		score double precision, balance numeric(10,2), meta jsonb, created_at timestamptz, born date)`)
	f.exec(`CREATE TABLE ` + sessions + ` (user_id bigint, session_id text, started_at timestamp, PRIMARY KEY (user_id, session_id))`)
	f.exec(`ALTER TABLE ` + sessions + ` REPLICA IDENTITY FULL`)
	f.exec(`CREATE TABLE ` + docs + ` (id int PRIMARY KEY, title text, body text)`)
	f.exec(`ALTER TABLE ` + docs + ` ALTER COLUMN body SET STORAGE EXTERNAL`)
	big := strings.Repeat("0123456789abcdef", 1024) // 16 KiB, stored out of line
	f.exec(`INSERT INTO ` + users + ` VALUES (1, 'a@x.io', 'Ann', true, 1.5, 12.50, '{"plan":"pro"}', '2024-05-01 10:00:00.25+00', '1990-02-03'),
		(2, 'b@x.io', NULL, false, -2e-05, 0, NULL, NULL, NULL)`)
	f.exec(`INSERT INTO ` + sessions + ` VALUES (1, 'a', '2024-01-01 00:00:00')`)
	f.exec(`INSERT INTO `+docs+` VALUES (1, 'first', $1)`, big)
	f.tablesSetting(users, sessions, docs)

	col := f.collect(users, sessions, docs)
	r := f.start(Options{})
	r.waitStreaming(t)

	f.exec(`INSERT INTO ` + users + ` (id, email) VALUES (3, 'c@x.io')`)
	f.exec(`UPDATE ` + users + ` SET name = 'Anna' WHERE id = 1`)
	f.exec(`UPDATE ` + users + ` SET id = 10 WHERE id = 2`)
	f.exec(`DELETE FROM ` + users + ` WHERE id = 3`)
	f.exec(`INSERT INTO ` + sessions + ` VALUES (1, 'b', '2024-02-01 00:00:00')`)
	f.exec(`UPDATE ` + sessions + ` SET started_at = '2024-03-01 12:00:00' WHERE session_id = 'a'`)
	f.exec(`DELETE FROM ` + sessions + ` WHERE session_id = 'b'`)
	f.exec(`UPDATE ` + docs + ` SET title = 'second' WHERE id = 1`)
	f.exec(`ALTER TABLE ` + users + ` ADD COLUMN plan text`)
	f.exec(`INSERT INTO ` + users + ` (id, email, plan) VALUES (4, 'd@x.io', 'pro')`)
	f.exec(`UPDATE ` + users + ` SET plan = 'basic' WHERE id = 1`)
	f.exec(`BEGIN; UPDATE ` + users + ` SET name = 'n1' WHERE id = 4; UPDATE ` + users + ` SET name = 'n2' WHERE id = 4; COMMIT`)

	// users: r r c u d c d c u u u; sessions: r c u d; docs: r u
	const want = 17
	col.waitFor(t, 30*time.Second, "every change", func(rs []change) bool { return len(rs) >= want })
	time.Sleep(300 * time.Millisecond) // anything extra would show now
	recs := col.snapshot()
	if len(recs) != want {
		t.Fatalf("got %d records, want %d", len(recs), want)
	}

	groups := byKey(recs)
	ops := func(topic, key string) string {
		var b strings.Builder
		for _, r := range groups[topic+"|"+key] {
			b.WriteString(r.Op)
		}
		return b.String()
	}
	ut, st, dt := f.topic(users), f.topic(sessions), f.topic(docs)
	for _, c := range []struct{ topic, key, ops string }{
		{ut, `{"id":1}`, "ruu"},
		{ut, `{"id":2}`, "rd"},
		{ut, `{"id":10}`, "c"},
		{ut, `{"id":3}`, "cd"},
		{ut, `{"id":4}`, "cuu"},
		{st, `{"session_id":"a","user_id":1}`, "ru"},
		{st, `{"session_id":"b","user_id":1}`, "cd"},
		{dt, `{"id":1}`, "ru"},
	} {
		if got := ops(c.topic, c.key); got != c.ops {
			t.Errorf("%s %s: ops %q, want %q", c.topic, c.key, got, c.ops)
		}
	}

	get := func(topic, key string, i int) change {
		t.Helper()
		g := groups[topic+"|"+key]
		if i >= len(g) {
			t.Fatalf("%s %s: no record %d", topic, key, i)
		}
		return g[i]
	}

	// Snapshot rows: typed values, snapshot source at one point.
	ann := get(ut, `{"id":1}`, 0)
	wantAfter := map[string]any{"id": 1.0, "email": "a@x.io", "name": "Ann", "active": true, "score": 1.5, "balance": "12.50",
		"meta": map[string]any{"plan": "pro"}, "created_at": "2024-05-01T10:00:00.25Z", "born": "1990-02-03"}
	assertMap(t, "snapshot after", ann.After, wantAfter)
	if !ann.Source.Snapshot || ann.Source.LSN == "" || ann.Source.LSN != ann.Source.CommitLSN || ann.Before != nil {
		t.Errorf("snapshot record source/before: %+v before=%v", ann.Source, ann.Before)
	}
	if ann.Header != "cdc/1" || ann.V != schemas.CDCVersion || ann.Schema != "public" || ann.Table != users {
		t.Errorf("envelope: header %q v %d %s.%s", ann.Header, ann.V, ann.Schema, ann.Table)
	}
	b0 := get(ut, `{"id":2}`, 0)
	assertMap(t, "snapshot nulls", b0.After, map[string]any{"id": 2.0, "email": "b@x.io", "name": nil, "active": false,
		"score": -2e-05, "balance": "0.00", "meta": nil, "created_at": nil, "born": nil})
	if b0.Source.LSN != ann.Source.LSN {
		t.Errorf("snapshot rows at different points: %s and %s", b0.Source.LSN, ann.Source.LSN)
	}
	wantCols := []schemas.Column{{Name: "id", Type: "int8", Key: true}, {Name: "email", Type: "text"}, {Name: "name", Type: "text"},
		{Name: "active", Type: "bool"}, {Name: "score", Type: "float8"}, {Name: "balance", Type: "numeric"}, {Name: "meta", Type: "jsonb"},
		{Name: "created_at", Type: "timestamptz"}, {Name: "born", Type: "date"}}
	assertColumns(t, "snapshot columns", ann.Columns, wantCols)

	// Streamed update, default identity: no before.
	upd := get(ut, `{"id":1}`, 1)
	if upd.Before != nil || upd.After["name"] != "Anna" || upd.Source.Snapshot || upd.Source.XID == 0 || upd.Source.CommitTime.IsZero() {
		t.Errorf("update: before=%v after=%v source=%+v", upd.Before, upd.After, upd.Source)
	}
	assertColumns(t, "stream columns", upd.Columns, wantCols)
	if lsn(t, upd.Source.LSN) <= lsn(t, ann.Source.LSN) || lsn(t, upd.Source.CommitLSN) < lsn(t, upd.Source.LSN) {
		t.Errorf("update LSN %s (commit %s) not after snapshot point %s", upd.Source.LSN, upd.Source.CommitLSN, ann.Source.LSN)
	}

	// Key change: delete of the old key, create of the new, same LSN.
	del2, new10 := get(ut, `{"id":2}`, 1), get(ut, `{"id":10}`, 0)
	assertMap(t, "key change before", del2.Before, map[string]any{"id": 2.0})
	if del2.After != nil || new10.After["id"] != 10.0 || new10.After["email"] != "b@x.io" || del2.Source.LSN != new10.Source.LSN {
		t.Errorf("key change: %+v / %+v", del2.Change, new10.Change)
	}
	// Delete, default identity: before holds the key.
	assertMap(t, "delete before", get(ut, `{"id":3}`, 1).Before, map[string]any{"id": 3.0})

	// Identity full: before is the whole old row.
	su := get(st, `{"session_id":"a","user_id":1}`, 1)
	assertMap(t, "full before", su.Before, map[string]any{"user_id": 1.0, "session_id": "a", "started_at": "2024-01-01T00:00:00"})
	assertMap(t, "full after", su.After, map[string]any{"user_id": 1.0, "session_id": "a", "started_at": "2024-03-01T12:00:00"})
	sd := get(st, `{"session_id":"b","user_id":1}`, 1)
	assertMap(t, "full delete before", sd.Before, map[string]any{"user_id": 1.0, "session_id": "b", "started_at": "2024-02-01T00:00:00"})

	// TOAST: the unchanged body is marked, not null.
	if get(dt, `{"id":1}`, 0).After["body"] != big {
		t.Error("snapshot of the TOASTed row lacks its body")
	}
	du := get(dt, `{"id":1}`, 1)
	if _, has := du.After["body"]; has || du.After["title"] != "second" || len(du.Unchanged) != 1 || du.Unchanged[0] != "body" {
		t.Errorf("TOAST update: after=%v unchanged=%v", du.After, du.Unchanged)
	}

	// Column added mid-stream.
	c4 := get(ut, `{"id":4}`, 0)
	if c4.After["plan"] != "pro" || len(c4.Columns) != 10 || c4.Columns[9].Name != "plan" {
		t.Errorf("added column: after=%v columns=%v", c4.After, c4.Columns)
	}
	if u := get(ut, `{"id":1}`, 2); u.After["plan"] != "basic" {
		t.Errorf("update after added column: %v", u.After)
	}
	// One transaction, two updates of one key: in order, one commit LSN.
	n1, n2 := get(ut, `{"id":4}`, 1), get(ut, `{"id":4}`, 2)
	if n1.After["name"] != "n1" || n2.After["name"] != "n2" || n1.Source.CommitLSN != n2.Source.CommitLSN || n1.Source.XID != n2.Source.XID {
		t.Errorf("two updates in a transaction: %v %v / %+v %+v", n1.After, n2.After, n1.Source, n2.Source)
	}
	for _, r := range recs {
		if r.Key != keyJSON(t, r.Change.Key) {
			t.Errorf("Kafka key %s differs from the record's key %v", r.Key, r.Change.Key)
		}
	}

	// Everything is acknowledged: the slot's flush position catches up.
	f.waitConfirmed(lsn(t, n2.Source.CommitLSN), 15*time.Second)

	// Metrics: rows acknowledged by table and op, the acknowledged position,
	// the slot's existence and lag, the time since the last message.
	slot := f.cfg.CDCSlot
	for _, m := range []struct {
		table, op string
		want      float64
	}{{users, "r", 2}, {users, "c", 3}, {users, "u", 4}, {users, "d", 2}, {sessions, "d", 1}, {docs, "u", 1}} {
		if got := metricValue(mRows.WithLabelValues(slot, "public."+m.table, m.op)); got != m.want {
			t.Errorf("launchready_cdc_rows_total{table=%s,op=%s} = %v, want %v", m.table, m.op, got, m.want)
		}
	}
	if got := LSN(metricValue(r.c.metrics.acked)); got < lsn(t, n2.Source.CommitLSN) {
		t.Errorf("launchready_cdc_acked_lsn %s behind %s", got, n2.Source.CommitLSN)
	}
	if metricValue(r.c.metrics.slotExists) != 1 || metricValue(r.c.metrics.sinceMessage) > 5 {
		t.Errorf("slot_exists %v, seconds_since_last_message %v", metricValue(r.c.metrics.slotExists), metricValue(r.c.metrics.sinceMessage))
	}

	// Readiness follows the slot; a slot lost after snapshots stops the
	// stage with the one-line fix rather than silently starting over.
	if ready, detail := r.env.Health.Result(context.Background()); !ready {
		t.Fatalf("not ready while streaming: %v", detail)
	}
	dropSlot(context.Background(), t, f.app, f.cfg.CDCSlot)
	if ready, _ := r.env.Health.Result(context.Background()); ready {
		t.Error("ready although the slot is gone")
	}
	select {
	case err := <-r.done:
		close(r.done)
		if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), "--resnapshot") {
			t.Errorf("after losing the slot: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("cdc kept running without its slot")
	}
}
