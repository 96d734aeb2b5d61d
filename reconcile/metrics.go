package reconcile

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/internal/obs"
)

type metrics struct {
	events    *prometheus.CounterVec
	written   *prometheus.CounterVec
	customers prometheus.Gauge
	open      prometheus.Gauge
	latency   prometheus.Histogram
	batch     prometheus.Histogram
}

var (
	metricsOnce sync.Once
	met         *metrics
)

// theMetrics registers the reconciler's metrics once per process (several
// reconcilers in one process — tests — share them).
func theMetrics() *metrics {
	metricsOnce.Do(func() {
		met = &metrics{
			events: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "launchready_reconcile_events_total",
				Help: "Input records by source and result (applied, duplicate, ignored, invalid).",
			}, []string{"source", "result"}),
			written: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "launchready_reconcile_records_written_total",
				Help: "Records the reconciler wrote, by topic (relative name).",
			}, []string{"topic"}),
			customers: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "launchready_reconcile_customers",
				Help: "Live canonical customers held in memory.",
			}),
			open: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "launchready_reconcile_open_mismatches",
				Help: "Open mismatch findings.",
			}),
			latency: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "launchready_reconcile_latency_seconds",
				Help:    "From ingest receiving an event to its entitlement record being acknowledged.",
				Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
			}),
			batch: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "launchready_reconcile_batch_seconds",
				Help:    "Time to apply one input batch and write its outputs.",
				Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
			}),
		}
		obs.Registry.MustRegister(met.events, met.written, met.customers, met.open, met.latency, met.batch)
	})
	return met
}
