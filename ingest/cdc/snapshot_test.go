package cdc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/internal/kafka"
)

// counterTable creates a table whose updates bump n by one, so a missing or
// repeated update shows in the sequence of n.
func (f *fixture) counterTable(name string, rows int) string {
	t := f.table(name)
	f.exec(`CREATE TABLE ` + t + ` (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, note text)`)
	if rows > 0 {
		f.exec(`INSERT INTO `+t+` (id, note) SELECT g, 'seed' FROM generate_series(1, $1) g`, rows)
	}
	return t
}

// writeLoad runs workers doing random single-row transactions (insert,
// update n = n+1, delete) on ids 1..ids until stop is closed.
func writeLoad(t testing.TB, pool *pgxpool.Pool, table string, workers, ids int, stop <-chan struct{}) (wait func() int64) {
	var wg sync.WaitGroup
	var ops atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := 1 + rand.IntN(ids)
				var err error
				switch rand.IntN(10) {
				case 0, 1:
					_, err = pool.Exec(ctx, `INSERT INTO `+table+` (id, note) VALUES ($1, 'load') ON CONFLICT (id) DO NOTHING`, id)
				case 2:
					_, err = pool.Exec(ctx, `DELETE FROM `+table+` WHERE id = $1`, id)
				default:
					_, err = pool.Exec(ctx, `UPDATE `+table+` SET n = n + 1 WHERE id = $1`, id)
				}
				if err != nil {
					t.Errorf("load: %v", err)
					return
				}
				ops.Add(1)
			}
		}()
	}
	return func() int64 { wg.Wait(); return ops.Load() }
}

// tableState reads id → n of a counter table.
func tableState(t testing.TB, pool *pgxpool.Pool, table string) map[string]float64 {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id, n FROM `+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]float64{}
	for rows.Next() {
		var id int64
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf(`{"id":%d}`, id)] = float64(n)
	}
	return out
}

// checkCounterStream checks the records of a counter table against its
// final state: every key's sequence is possible (a create only where the row
// was absent, an update bumps n by exactly one over the previous record, a
// snapshot row may come at any point and sets the state), and the last
// record of every key agrees with the table. exact also forbids repeats:
// no record at an LSN already seen for the key.
func checkCounterStream(t testing.TB, groups map[string][]change, topic string, final map[string]float64, exact bool) {
	t.Helper()
	bad, total := 0, 0
	report := func(format string, a ...any) {
		if bad < 10 {
			t.Errorf(format, a...)
		}
		bad++
	}
	for key, n := range final {
		g := groups[topic+"|"+key]
		if len(g) == 0 {
			report("%s: row in the table (n=%v) but no record", key, n)
			continue
		}
		last := g[len(g)-1]
		if last.Op == "d" || last.After["n"] != n {
			report("%s: last record %s %v, table has n=%v%s", key, last.Op, last.After, n, history(g))
		}
	}
	for gk, g := range groups {
		if gk[:len(topic)] != topic {
			continue
		}
		total += len(g)
		key := gk[len(topic)+1:]
		if _, ok := final[key]; !ok && g[len(g)-1].Op != "d" {
			report("%s: deleted from the table, last record %s", key, g[len(g)-1].Op)
		}
		known, present := false, false
		var n float64
		seen := map[string]bool{}
		for _, r := range g {
			id := r.Op + "@" + r.Source.LSN
			if exact && seen[id] {
				report("%s: %s repeated", key, id)
			}
			seen[id] = true
			switch r.Op {
			case "r":
				known, present, n = true, true, r.After["n"].(float64)
			case "c":
				if known && present {
					report("%s: create of a present row (doubled at the boundary?) at %s", key, r.Source.LSN)
				}
				known, present, n = true, true, r.After["n"].(float64)
			case "u":
				got := r.After["n"].(float64)
				if known && (!present || got != n+1) {
					report("%s: update to n=%v after n=%v (present=%v) at %s", key, got, n, present, r.Source.LSN)
				}
				known, present, n = true, true, got
			case "d":
				if known && !present {
					report("%s: delete of an absent row at %s", key, r.Source.LSN)
				}
				known, present = true, false
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d problems in %d records", bad, total)
	}
}

// waitCaughtUp waits until the slot confirmed the current WAL position and
// the stage is idle (everything written is in Kafka).
func (f *fixture) waitCaughtUp(timeout time.Duration) {
	f.t.Helper()
	f.exec(`SELECT pg_logical_emit_message(false, 'test', 'mark')`)
	f.waitConfirmed(f.currentLSN(), timeout)
}

// TestSnapshotBoundary: the slot and its snapshot are created while writers
// change the table; across the boundary no change is lost and none doubled.
func TestSnapshotBoundary(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tb := f.counterTable("boundary", 2000)
	f.tablesSetting(tb)
	col := f.collect(tb)

	stop := make(chan struct{})
	wait := writeLoad(t, f.app, tb, 3, 3000, stop)
	time.Sleep(300 * time.Millisecond)
	r := f.start(Options{HeartbeatInterval: 200 * time.Millisecond})
	r.waitStreaming(t)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	ops := wait()
	f.waitCaughtUp(30 * time.Second)
	final := tableState(t, f.app, tb)
	recs := col.waitFor(t, 30*time.Second, "the final state", func(rs []change) bool {
		last := map[string]change{}
		for _, r := range rs {
			last[r.Key] = r
		}
		for k, n := range final {
			if l, ok := last[k]; !ok || l.Op == "d" || l.After["n"] != n {
				return false
			}
		}
		return true
	})
	snap := count(recs, func(c change) bool { return c.Op == "r" })
	if snap < 1000 || ops < 300 {
		t.Fatalf("too little happened around the boundary: %d snapshot rows, %d writes", snap, ops)
	}
	checkCounterStream(t, byKey(recs), f.topic(tb), final, true)
	checkSnapshotTimes(t, recs)
	t.Logf("%d snapshot rows, %d writes, %d records", snap, ops, len(recs))
}

// TestIdleSlotAdvances: with only unpublished tables written, the slot's
// confirmed position still moves (heartbeats and keepalives), so it does not
// pin WAL.
func TestIdleSlotAdvances(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pub, other := f.counterTable("published", 1), f.counterTable("other", 0)
	f.tablesSetting(pub)
	r := f.start(Options{HeartbeatInterval: 200 * time.Millisecond, StatusInterval: 100 * time.Millisecond})
	r.waitStreaming(t)
	start := f.slotConfirmed()
	for i := 0; i < 100; i++ {
		f.exec(`INSERT INTO `+other+` (id) VALUES ($1)`, i)
	}
	target := f.currentLSN()
	if target <= start {
		t.Fatalf("no WAL written? %s <= %s", target, start)
	}
	f.waitConfirmed(target, 15*time.Second)
	var lag int64
	if err := f.app.QueryRow(context.Background(), `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`, f.cfg.CDCSlot).Scan(&lag); err != nil {
		t.Fatal(err)
	}
	t.Logf("confirmed moved from %s past %s; lag now %d bytes", start, target, lag)
}

// blockingWriter never acknowledges: Write waits for its context.
type blockingWriter struct{ calls atomic.Int64 }

func (w *blockingWriter) Write(ctx context.Context, msgs ...kafka.Message) error {
	w.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

// TestSnapshotResumesAfterCrash: a first run creates the slot but Kafka
// never acknowledges its snapshot; the next run finds the snapshot owed,
// takes it again at a consistent point of the stream, and the table's
// records converge on its state.
func TestSnapshotResumesAfterCrash(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tb := f.counterTable("resume", 500)
	f.tablesSetting(tb)
	f.cfg.ShutdownTimeout = time.Second
	bw := &blockingWriter{}
	first := f.start(Options{Writer: bw})
	first.waitStreaming(t)
	start := f.slotConfirmed()
	stop := make(chan struct{})
	wait := writeLoad(t, f.app, tb, 2, 700, stop)
	time.Sleep(500 * time.Millisecond)
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	if bw.calls.Load() == 0 {
		t.Fatal("the first run wrote nothing")
	}
	if got := f.slotConfirmed(); got != start {
		t.Fatalf("slot confirmed %s although Kafka acknowledged nothing (created at %s)", got, start)
	}
	var pending int
	if err := f.state.QueryRow(context.Background(), `SELECT count(*) FROM lr_cdc_snapshots WHERE slot = $1 AND done_at IS NULL`, f.cfg.CDCSlot).Scan(&pending); err != nil || pending != 1 {
		t.Fatalf("owed snapshots: %d %v", pending, err)
	}

	col := f.collect(tb)
	f.cfg.ShutdownTimeout = 10 * time.Second
	second := f.start(Options{HeartbeatInterval: 200 * time.Millisecond})
	second.waitStreaming(t)
	time.Sleep(time.Second)
	close(stop)
	wait()
	f.waitCaughtUp(30 * time.Second)
	final := tableState(t, f.app, tb)
	recs := col.waitFor(t, 30*time.Second, "the snapshot and the stream", func(rs []change) bool {
		return count(rs, func(c change) bool { return c.Op == "r" }) > 0 && len(rs) > len(final)
	})
	time.Sleep(500 * time.Millisecond)
	recs = col.snapshot()
	checkCounterStream(t, byKey(recs), f.topic(tb), final, true)
	var doneRows int64
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f.state.QueryRow(context.Background(), `SELECT coalesce(row_count, -1) FROM lr_cdc_snapshots WHERE slot = $1 AND done_at IS NOT NULL`, f.cfg.CDCSlot).Scan(&doneRows)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot not recorded as done: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if snap := count(recs, func(c change) bool { return c.Op == "r" }); int64(snap) != doneRows {
		t.Errorf("%d snapshot records, %d recorded", snap, doneRows)
	}
}

// TestSnapshotOnRequest: a table added to the publication while streaming
// and under writes is snapshotted on request (POST /cdc/snapshot) at a
// consistent point: its records converge on the table's state.
func TestSnapshotOnRequest(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	first, later := f.counterTable("first", 3), f.counterTable("later", 400)
	f.tablesSetting(first)
	f.cfg.OpsToken = "ops-token-for-test"
	col := f.collect(first, later)
	r := f.start(Options{HeartbeatInterval: 200 * time.Millisecond})
	r.waitStreaming(t)

	stop := make(chan struct{})
	wait := writeLoad(t, f.app, later, 2, 500, stop)
	f.exec(`ALTER PUBLICATION ` + quoteIdent(f.cfg.CDCPublication) + ` ADD TABLE ` + later)
	time.Sleep(300 * time.Millisecond)

	post := func(auth string) int {
		req := httptest.NewRequest(http.MethodPost, "/cdc/snapshot?table=public."+later, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		r.env.Mux.ServeHTTP(w, req)
		return w.Code
	}
	if code := post("Bearer wrong"); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if code := post("Bearer " + f.cfg.OpsToken.Reveal()); code != http.StatusAccepted {
		t.Fatalf("snapshot request: %d", code)
	}
	if err := r.c.RequestSnapshot(context.Background(), "public.not_published"); err == nil {
		t.Error("a snapshot of an unpublished table was accepted")
	}
	time.Sleep(time.Second)
	close(stop)
	wait()
	f.waitCaughtUp(30 * time.Second)
	final := tableState(t, f.app, later)
	recs := col.waitFor(t, 30*time.Second, "the requested snapshot", func(rs []change) bool {
		return count(rs, func(c change) bool { return c.Op == "r" && c.Table == later }) >= 300
	})
	time.Sleep(500 * time.Millisecond)
	recs = col.snapshot()
	checkCounterStream(t, byKey(recs), f.topic(later), final, true)
	checkSnapshotTimes(t, recs)
	if n := count(recs, func(c change) bool { return c.Op == "r" && c.Table == first }); n != 3 {
		t.Errorf("the first table was snapshotted %d times over, want its 3 rows once", n)
	}
	if ready, detail := r.env.Health.Result(context.Background()); !ready {
		t.Errorf("not ready: %v", detail)
	}
	if err := r.stop(t); err != nil && !errors.Is(err, context.Canceled) {
		t.Error(err)
	}

	// A snapshot asked for on start (--snapshot-table).
	again := f.start(Options{SnapshotTables: []string{"public." + first}})
	again.waitStreaming(t)
	col.waitFor(t, 30*time.Second, "the snapshot asked for on start", func(rs []change) bool {
		return count(rs, func(c change) bool { return c.Op == "r" && c.Table == first }) == 6
	})
}

// history renders a key's records for a failure message.
func history(g []change) string {
	var b strings.Builder
	for _, r := range g {
		fmt.Fprintf(&b, "\n    %s n=%v lsn=%s commit=%s snap=%v p%d@%d", r.Op, r.After["n"], r.Source.LSN, r.Source.CommitLSN, r.Source.Snapshot, r.Partition, r.Offset)
	}
	return b.String()
}

// checkSnapshotTimes: a snapshot row's commit_time is no later than that of
// any change committed after the snapshot's point (consumers that order by
// commit time must not take later changes for stale ones).
func checkSnapshotTimes(t testing.TB, recs []change) {
	t.Helper()
	points := map[LSN]time.Time{}
	for _, r := range recs {
		if r.Op == "r" {
			points[lsn(t, r.Source.LSN)] = r.Source.CommitTime
		}
	}
	if len(points) == 0 {
		t.Fatal("no snapshot rows")
	}
	bad := 0
	for _, r := range recs {
		if r.Op == "r" {
			continue
		}
		c := lsn(t, r.Source.CommitLSN)
		for p, at := range points {
			if c >= p && r.Source.CommitTime.Before(at) {
				if bad < 5 {
					t.Errorf("change committed at %s (%s) after snapshot point %s, whose rows say %s", r.Source.CommitLSN, r.Source.CommitTime, p, at)
				}
				bad++
			}
		}
	}
}
