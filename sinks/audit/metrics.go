package audit

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/internal/obs"
)

var (
	rowsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_audit_rows_total",
		Help: "Rows the audit writer inserted into ClickHouse, by table (re-deliveries included).",
	}, []string{"table"})
	recordsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "launchready_audit_records_total",
		Help: "Kafka records the audit writer stored and acknowledged.",
	})
	undecodableTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "launchready_audit_undecodable_total",
		Help: "Kafka records the audit writer could not decode (stored in the dlq table with stage audit).",
	})
	insertFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "launchready_audit_insert_failures_total",
		Help: "Failed ClickHouse insert attempts; the batch is retried with backoff.",
	})
	insertSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "launchready_audit_insert_seconds",
		Help:    "Time to insert one batch into ClickHouse (successful attempts).",
		Buckets: prometheus.ExponentialBuckets(0.002, 2, 14),
	})
	clickhouseUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "launchready_audit_clickhouse_up",
		Help: "1 while the audit writer's last ClickHouse insert or connect succeeded, 0 while it retries.",
	})
	topicsGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "launchready_audit_topics",
		Help: "Topics the audit writer subscribes to.",
	})
)

func init() {
	obs.Registry.MustRegister(rowsTotal, recordsTotal, undecodableTotal, insertFailures, insertSeconds, clickhouseUp, topicsGauge)
}
