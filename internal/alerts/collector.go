package alerts

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/schemas"
)

// The gauges Prometheus needs for the rules whose inputs live in the audit
// trail and in Kafka rather than in a stage's counters. They are measured
// when scraped (at most every collectTTL) by the same functions the
// evaluator uses.
var (
	descMismatches = prometheus.NewDesc("launchready_ops_mismatches_open",
		"Open mismatches by kind, from the audit trail.", []string{"kind"}, nil)
	descCustomers = prometheus.NewDesc("launchready_ops_customers",
		"Canonical customers not merged away, from the audit trail.", nil, nil)
	descRefunds = prometheus.NewDesc("launchready_ops_refunds_access_granted",
		"Customers fully refunded more than LR_ALERT_REFUND_GRACE ago who still have access.", nil, nil)
	descLag = prometheus.NewDesc("launchready_ops_consumer_lag",
		"Records in a consumer group's topics after its committed offsets, by group (one group per stage).", []string{"group"}, nil)
	descUp = prometheus.NewDesc("launchready_ops_collect_success",
		"1 when the last measurement of a source (clickhouse, kafka) for these gauges succeeded.", []string{"source"}, nil)
)

const collectTTL = 15 * time.Second

// collector is registered once on obs.Registry; ExportGauges points it at
// its sources (the last call wins).
type collector struct {
	mu      sync.Mutex
	q       Querier
	db      string
	th      Thresholds
	backlog BacklogSource
	cached  []prometheus.Metric
	at      time.Time
}

var (
	gauges     = &collector{}
	gaugesOnce sync.Once
)

// ExportGauges registers (once) the launchready_ops_* gauges on obs.Registry
// and makes them measure q/db and backlog (nil: no consumer lag gauge).
func ExportGauges(q Querier, db string, th Thresholds, backlog BacklogSource) {
	gaugesOnce.Do(func() { obs.Registry.MustRegister(gauges) })
	gauges.mu.Lock()
	defer gauges.mu.Unlock()
	gauges.q, gauges.db, gauges.th, gauges.backlog = q, db, th, backlog
	gauges.cached, gauges.at = nil, time.Time{}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMismatches, descCustomers, descRefunds, descLag, descUp} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.q == nil {
		return
	}
	if time.Since(c.at) > collectTTL {
		c.cached, c.at = c.measure(), time.Now()
	}
	for _, m := range c.cached {
		ch <- m
	}
}

func (c *collector) measure() []prometheus.Metric {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now()
	var out []prometheus.Metric
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
	}
	chOK := 1.0
	if m, err := MismatchCounts(ctx, c.q, c.db, now); err == nil {
		for _, k := range []string{schemas.MismatchPaidNoAccess, schemas.MismatchAccessNotPaid, schemas.MismatchPaidTaggedLead,
			schemas.MismatchRevokedStillTag, schemas.MismatchMissingIn, schemas.MismatchDuplicateRecords} {
			if _, ok := m.ByKind[k]; !ok {
				m.ByKind[k] = 0 // known kinds are always exported, so sums are 0 rather than empty
			}
		}
		for _, k := range sortedKeys(m.ByKind) {
			gauge(descMismatches, float64(m.ByKind[k]), k)
		}
		gauge(descCustomers, float64(m.Customers))
	} else {
		chOK = 0
	}
	if rs, err := RefundsWithAccess(ctx, c.q, c.db, now, c.th.RefundGrace, c.th.RefundLookback); err == nil {
		gauge(descRefunds, float64(len(rs)))
	} else {
		chOK = 0
	}
	gauge(descUp, chOK, "clickhouse")
	if c.backlog != nil {
		lags, err := c.backlog.Backlog(ctx)
		for _, g := range sortedKeys(lags) {
			gauge(descLag, float64(lags[g]), g)
		}
		ok := 1.0
		if err != nil {
			ok = 0
		}
		gauge(descUp, ok, "kafka")
	}
	return out
}
