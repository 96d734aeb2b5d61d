package cdc

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/launchready/launchready/internal/testenv"
)

// TestKafkaDownHoldsFlush: while Kafka is down, the flush position sent to
// Postgres stays behind the first unacknowledged change, and the replication
// connection survives (status updates keep coming although the reader is
// blocked on a full pipeline, with wal_sender_timeout at 2s). When Kafka is
// back, everything arrives and the slot catches up.
func TestKafkaDownHoldsFlush(t *testing.T) {
	t.Parallel()
	k := testenv.PrivateKafka(t)
	f := newFixture(t)
	f.cfg.KafkaBrokers = []string{k.Addr}
	tb := f.counterTable("down", 0)
	f.tablesSetting(tb)
	opt := Options{
		HeartbeatInterval: 200 * time.Millisecond,
		StatusInterval:    200 * time.Millisecond,
		ReplicationParams: map[string]string{"wal_sender_timeout": "2s"},
	}
	// A small budget, so the reader blocks soon after Kafka stops answering.
	opt.pipeline = pipelineConfig{BudgetBytes: 4 << 10, RetryWindow: 5 * time.Minute}
	r := f.start(opt)
	r.waitStreaming(t)
	f.exec(`INSERT INTO ` + tb + ` (id) VALUES (0)`)
	f.waitCaughtUp(20 * time.Second)
	var pid int32
	if err := f.app.QueryRow(context.Background(), `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, f.cfg.CDCSlot).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	sessions := metricValue(r.c.metrics.sessions)

	t0 := time.Now()
	k.Stop()
	t.Logf("kafka stopped in %s", time.Since(t0))
	const rows = 200
	for i := 1; i <= rows; i++ {
		f.exec(`INSERT INTO `+tb+` (id, note) VALUES ($1, $2)`, i, fmt.Sprintf("%0200d", i))
	}
	// Three wal_sender_timeouts with Kafka down.
	var confirmed LSN
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); {
		confirmed = max(confirmed, f.slotConfirmed())
		time.Sleep(200 * time.Millisecond)
	}
	if blocked := r.c.metrics.inflight; metricValue(blocked) == 0 {
		t.Error("nothing in flight while Kafka was down")
	}
	var pidNow int32
	if err := f.app.QueryRow(context.Background(), `SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1`, f.cfg.CDCSlot).Scan(&pidNow); err != nil {
		t.Fatal(err)
	}
	if pidNow != pid || metricValue(r.c.metrics.sessions) != sessions {
		t.Errorf("the replication connection was lost while Kafka was down (walsender %d → %d)", pid, pidNow)
	}

	t0 = time.Now()
	k.Start()
	t.Logf("kafka started in %s", time.Since(t0))
	t0 = time.Now()
	col := f.collect(tb)
	recs := col.waitFor(t, 60*time.Second, "every row after Kafka came back", func(rs []change) bool {
		ids := map[float64]bool{}
		for _, c := range rs {
			ids[c.After["id"].(float64)] = true
		}
		return len(ids) == rows+1
	})
	t.Logf("rows arrived %s after the restart", time.Since(t0))
	// The first row written while Kafka was down: its transaction must not
	// have been confirmed (a restart would have skipped it).
	for _, c := range recs {
		if c.After["id"] == 1.0 {
			if commit := lsn(t, c.Source.CommitLSN); confirmed > commit {
				t.Errorf("slot confirmed %s while Kafka was down, past the commit %s of an unacknowledged change", confirmed, commit)
			}
		}
	}
	f.waitCaughtUp(30 * time.Second)
}

// metricValue reads a counter or gauge.
func metricValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return 0
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
