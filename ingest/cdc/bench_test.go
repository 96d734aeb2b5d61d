package cdc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/kafka"
)

const recvlogical = "/usr/lib/postgresql/15/bin/pg_recvlogical"

// benchRows is the number of rows each phase writes (LR_BENCH_ROWS).
func benchRows() int {
	if n, err := strconv.Atoi(os.Getenv("LR_BENCH_ROWS")); err == nil && n > 0 {
		return n
	}
	return 200_000
}

// BenchmarkCDC measures, on the local stack:
//
//   - catch-up: N rows committed while the stage is stopped, then the time
//     from its start until Kafka acknowledged all of them (rows/s), next to
//     pg_recvlogical reading the same WAL through pgoutput slots of its own
//     into /dev/null, once before and once after the stage (the mean is the
//     reference: the physical limit of logical decoding on this machine);
//   - live: the stage running while N rows are committed as fast as one
//     writer can, 100 rows a transaction: rows/s from the first commit to the
//     last acknowledgement, commit-to-acknowledgement latency, and the
//     slot's largest lag in bytes.
func BenchmarkCDC(b *testing.B) {
	if _, err := os.Stat(recvlogical); err != nil {
		b.Skipf("%s not installed", recvlogical)
	}
	f := newFixture(b)
	tb := f.table("bench")
	f.exec(`CREATE TABLE ` + tb + ` (id bigint PRIMARY KEY, email text NOT NULL, name text, plan text,
		active boolean NOT NULL, n int NOT NULL, created_at timestamptz NOT NULL)`)
	f.tablesSetting(tb)
	// Two pg_recvlogical slots: one read before the stage, one after, so a
	// change of the machine's load in between shows in the reference too.
	recvSlots := []string{f.cfg.CDCSlot + "_recv1", f.cfg.CDCSlot + "_recv2"}
	b.Cleanup(func() {
		for _, s := range recvSlots {
			dropSlot(context.Background(), b, f.app, s)
		}
	})
	rows := benchRows()
	next := 0
	// insert commits n rows, 100 a transaction; each gets a position at or
	// after the end of each commit (read right after it, so it may include
	// other sessions' WAL: the latency it yields is an upper bound).
	insert := func(n int, each func(after LSN)) {
		b.Helper()
		ctx := context.Background()
		for done := 0; done < n; done += 100 {
			k := min(100, n-done)
			_, err := f.app.Exec(ctx, `INSERT INTO `+tb+` (id, email, name, plan, active, n, created_at)
				SELECT g, 'user' || g || '@example.com', 'User ' || g, 'pro', true, 0, now() FROM generate_series($1::bigint, $2::bigint) g`, next+1, next+k)
			if err != nil {
				b.Fatal(err)
			}
			next += k
			if each != nil {
				var l string
				if err := f.app.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&l); err != nil {
					b.Fatal(err)
				}
				each(lsn(b, l))
			}
		}
	}
	mark := func() LSN {
		var l string
		if err := f.app.QueryRow(context.Background(), `SELECT pg_logical_emit_message(false, 'bench', 'end')::text`).Scan(&l); err != nil {
			b.Fatal(err)
		}
		return lsn(b, l)
	}

	// Create the slot and the publication (the table is empty: no snapshot to speak of).
	first := f.start(Options{})
	first.waitStreaming(b)
	if err := first.stop(b); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for _, slot := range recvSlots {
			out, err := exec.Command(recvlogical, "-d", f.cfg.PostgresURL, "-S", slot, "-P", "pgoutput", "--create-slot").CombinedOutput()
			if err != nil {
				b.Fatalf("pg_recvlogical --create-slot: %v\n%s", err, out)
			}
		}
		insert(rows, nil)
		end := mark()
		b.StartTimer()

		// pg_recvlogical: the same WAL, decoded by pgoutput, to /dev/null.
		recv := func(slot string) time.Duration {
			t0 := time.Now()
			out, err := exec.Command(recvlogical, "-d", f.cfg.PostgresURL, "-S", slot, "--start", "--endpos", end.String(),
				"-o", "proto_version=1", "-o", "publication_names="+f.cfg.CDCPublication, "--no-loop", "-f", "/dev/null").CombinedOutput()
			took := time.Since(t0)
			if err != nil {
				b.Fatalf("pg_recvlogical: %v\n%s", err, out)
			}
			dropSlot(context.Background(), b, f.app, slot)
			return took
		}
		recvTook := recv(recvSlots[0])

		// The stage catching up on the same rows, from its start.
		t0 := time.Now()
		r := f.start(Options{})
		for acked(r) < end {
			time.Sleep(2 * time.Millisecond)
		}
		cdcTook := time.Since(t0)
		var writeAvg time.Duration // Kafka's answer time, which bounds the stage on a busy machine
		for _, w := range r.c.writers {
			if p, ok := w.(*kafka.Producer); ok {
				writeAvg += p.Stats().WriteTime.Avg / time.Duration(len(r.c.writers))
			}
		}
		recvTook = (recvTook + recv(recvSlots[1])) / 2

		// Live: commit while the stage runs.
		var mu sync.Mutex
		var commits []LSN
		var commitTimes []time.Time
		var lats []time.Duration
		stopPoll := make(chan struct{})
		var maxLag int64
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { // acknowledgement times
			defer wg.Done()
			j := 0
			for {
				a := acked(r)
				now := time.Now()
				mu.Lock()
				for j < len(commits) && commits[j] <= a {
					lats = append(lats, now.Sub(commitTimes[j]))
					j++
				}
				mu.Unlock()
				select {
				case <-stopPoll:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
		go func() { // slot lag
			defer wg.Done()
			for {
				var lag int64
				if err := f.app.QueryRow(context.Background(), `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`, f.cfg.CDCSlot).Scan(&lag); err == nil && lag > maxLag {
					maxLag = lag
				}
				select {
				case <-stopPoll:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
		t0 = time.Now()
		insert(rows, func(l LSN) {
			mu.Lock()
			commits = append(commits, l)
			commitTimes = append(commitTimes, time.Now())
			mu.Unlock()
		})
		writeTook := time.Since(t0)
		mark() // a position past the last commit, for the last latency
		for {
			mu.Lock()
			n := len(lats)
			mu.Unlock()
			if n == len(commits) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		liveTook := time.Since(t0)
		close(stopPoll)
		wg.Wait()
		if err := r.stop(b); err != nil {
			b.Fatal(err)
		}

		sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
		pct := func(p float64) float64 { return float64(lats[int(p*float64(len(lats)-1))].Microseconds()) / 1000 }
		cdcRate := float64(rows) / cdcTook.Seconds()
		recvRate := float64(rows) / recvTook.Seconds()
		b.ReportMetric(cdcRate, "rows/s")
		b.ReportMetric(recvRate, "recvlogical_rows/s")
		b.ReportMetric(100*cdcRate/recvRate, "pct_of_recvlogical")
		b.ReportMetric(float64(rows)/liveTook.Seconds(), "live_rows/s")
		b.ReportMetric(float64(rows)/writeTook.Seconds(), "live_commit_rows/s")
		b.ReportMetric(pct(0.5), "ack_p50_ms")
		b.ReportMetric(pct(0.99), "ack_p99_ms")
		b.ReportMetric(float64(maxLag), "max_lag_bytes")
		b.ReportMetric(float64(writeAvg.Microseconds())/1000, "kafka_write_avg_ms")
		fmt.Fprintf(os.Stderr, "BenchmarkCDC: %d rows; catch-up %s (%.0f rows/s, Kafka writes %s on average) vs pg_recvlogical %s (%.0f rows/s): %.0f%%; live %.0f rows/s (writer %.0f rows/s), ack p50 %.1f ms p99 %.1f ms, max slot lag %d bytes\n",
			rows, cdcTook.Round(time.Millisecond), cdcRate, writeAvg.Round(100*time.Microsecond), recvTook.Round(time.Millisecond), recvRate, 100*cdcRate/recvRate,
			float64(rows)/liveTook.Seconds(), float64(rows)/writeTook.Seconds(), pct(0.5), pct(0.99), maxLag)
	}
}

// acked is the position the running stage has had acknowledged by Kafka.
func acked(r *running) LSN { return LSN(metricValue(r.c.metrics.acked)) }
