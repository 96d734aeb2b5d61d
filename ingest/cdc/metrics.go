package cdc

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/internal/obs"
)

// The stage's metrics, registered once in obs.Registry and labelled by slot
// (a process may run several CDC stages, e.g. in tests).
var (
	metricsOnce sync.Once

	mLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "launchready_cdc_slot_lag_bytes",
		Help: "WAL bytes between the server's current position and the slot's confirmed_flush_lsn.",
	}, []string{"slot"})
	mRows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_cdc_rows_total",
		Help: "Row changes acknowledged by Kafka, by table and op (c, u, d, r).",
	}, []string{"slot", "table", "op"})
	mAcked = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "launchready_cdc_acked_lsn",
		Help: "Highest WAL position whose every change Kafka acknowledged (the flush LSN sent to Postgres), as a number.",
	}, []string{"slot"})
	mSinceMessage = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "launchready_cdc_seconds_since_last_message",
		Help: "Seconds since the last WAL data message (change, commit or heartbeat) arrived.",
	}, []string{"slot"})
	mSlotExists = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "launchready_cdc_slot_exists",
		Help: "1 while the replication slot exists, 0 once it is gone.",
	}, []string{"slot"})
	mSessions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_cdc_sessions_total",
		Help: "Replication sessions started (a restart after an error starts a new one).",
	}, []string{"slot"})
	mWriteErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_cdc_kafka_write_errors_total",
		Help: "Failed Kafka writes (each is retried).",
	}, []string{"slot"})
	mInflight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "launchready_cdc_inflight_bytes",
		Help: "Record bytes handed to Kafka and not yet acknowledged.",
	}, []string{"slot"})
	mTruncates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_cdc_truncates_ignored_total",
		Help: "TRUNCATE messages received and not turned into records.",
	}, []string{"slot"})
)

// slotMetrics are one slot's children of the vectors.
type slotMetrics struct {
	slot         string
	lag          prometheus.Gauge
	acked        prometheus.Gauge
	sinceMessage prometheus.Gauge
	slotExists   prometheus.Gauge
	sessions     prometheus.Counter
	writeErrors  prometheus.Counter
	inflight     prometheus.Gauge
	truncates    prometheus.Counter
}

func newSlotMetrics(slot string) *slotMetrics {
	metricsOnce.Do(func() {
		obs.Registry.MustRegister(mLag, mRows, mAcked, mSinceMessage, mSlotExists, mSessions, mWriteErrors, mInflight, mTruncates)
	})
	return &slotMetrics{
		slot:         slot,
		lag:          mLag.WithLabelValues(slot),
		acked:        mAcked.WithLabelValues(slot),
		sinceMessage: mSinceMessage.WithLabelValues(slot),
		slotExists:   mSlotExists.WithLabelValues(slot),
		sessions:     mSessions.WithLabelValues(slot),
		writeErrors:  mWriteErrors.WithLabelValues(slot),
		inflight:     mInflight.WithLabelValues(slot),
		truncates:    mTruncates.WithLabelValues(slot),
	}
}

// rows returns the row counter of a table and op.
func (m *slotMetrics) rows(table string) func(op string) prometheus.Counter {
	return func(op string) prometheus.Counter { return mRows.WithLabelValues(m.slot, table, op) }
}
