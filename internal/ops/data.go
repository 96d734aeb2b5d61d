package ops

import (
	"context"
	"fmt"
	"html/template"
	"math"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/launchready/launchready/dashboards"
	"github.com/launchready/launchready/internal/alerts"
	"github.com/launchready/launchready/internal/obs"
)

// Ranges the overview offers, and the bucket each one's charts use.
var ranges = []struct {
	Name           string
	Span, Interval time.Duration
}{
	{"1h", time.Hour, time.Minute},
	{"6h", 6 * time.Hour, 10 * time.Minute},
	{"24h", 24 * time.Hour, 30 * time.Minute},
	{"7d", 7 * 24 * time.Hour, 3 * time.Hour},
}

// Stat is one headline number.
type Stat struct {
	Title       string  `json:"title"`
	Value       float64 `json:"value"`
	Text        string  `json:"text"`
	Description string  `json:"description,omitempty"`
	Error       string  `json:"error,omitempty"`
}

// Chart is one rendered panel.
type Chart struct {
	Title       string        `json:"title"`
	Description string        `json:"description,omitempty"`
	Kind        string        `json:"kind"` // timeseries or barchart
	Series      []seriesJSON  `json:"series"`
	SVG         template.HTML `json:"-"`
	Error       string        `json:"error,omitempty"`
}

type seriesJSON struct {
	Name   string       `json:"name"`
	Points [][2]float64 `json:"points"` // unix seconds, value
}

// Overview is what the overview page and /ops/api/stats show.
type Overview struct {
	Range   string                `json:"range"`
	From    time.Time             `json:"from"`
	To      time.Time             `json:"to"`
	Stats   []Stat                `json:"stats"`
	Charts  []Chart               `json:"charts"`
	Refunds []alerts.RefundAccess `json:"refunds_with_access"`
	Live    []Stat                `json:"live"`
}

// overviewData runs every ClickHouse panel of the audit dashboard for the
// range (at most four queries at a time); a panel that fails shows its
// error instead of failing the page.
func (s *server) overviewData(ctx context.Context, rangeName string) (*Overview, error) {
	span, interval := ranges[2].Span, ranges[2].Interval
	rangeName = ranges[2].Name
	for _, r := range ranges {
		if r.Name == rangeNameOr(rangeName) {
			span, interval, rangeName = r.Span, r.Interval, r.Name
		}
	}
	to := s.now().UTC()
	from := to.Add(-span)
	d, err := dashboards.ByUID("launchready-audit")
	if err != nil {
		return nil, err
	}
	ov := &Overview{Range: rangeName, From: from, To: to}
	type slot struct {
		stat  *Stat
		chart *Chart
	}
	var slots []slot
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, p := range d.Panels {
		if p.Datasource.Type != dashboards.ClickHouse || len(p.Targets) == 0 || p.Type == "table" {
			continue
		}
		sl := slot{}
		if p.Type == "stat" {
			sl.stat = &Stat{Title: p.Title, Description: p.Description}
		} else {
			sl.chart = &Chart{Title: p.Title, Description: p.Description, Kind: p.Type}
		}
		slots = append(slots, sl)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := s.run(ctx, p.Targets[0].RawSQL, from, to, interval)
			switch {
			case sl.stat != nil:
				s.fillStat(sl.stat, p, res, err)
			default:
				s.fillChart(sl.chart, p, res, err, from, to)
			}
		}()
	}
	var refundErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		ov.Refunds, refundErr = alerts.RefundsWithAccess(ctx, s.q, s.db, to, s.th.RefundGrace, s.th.RefundLookback)
	}()
	wg.Wait()
	for _, sl := range slots {
		if sl.stat != nil {
			ov.Stats = append(ov.Stats, *sl.stat)
		} else {
			ov.Charts = append(ov.Charts, *sl.chart)
		}
	}
	refunds := Stat{Title: "Refunded customers with access", Value: float64(len(ov.Refunds)), Text: fmt.Sprint(len(ov.Refunds)),
		Description: fmt.Sprintf("Fully refunded more than %s ago and still granted access (by the entitlement or in Circle).", s.th.RefundGrace)}
	if refundErr != nil {
		refunds.Error, refunds.Text = refundErr.Error(), "?"
	}
	ov.Stats = append(ov.Stats, refunds)
	ov.Live = liveStats()
	return ov, nil
}

func rangeNameOr(n string) string {
	if n == "" {
		return "24h"
	}
	return n
}

func (s *server) run(ctx context.Context, raw string, from, to time.Time, interval time.Duration) (*dashboards.Result, error) {
	sql, err := dashboards.ExpandSQL(raw, from, to, interval)
	if err != nil {
		return nil, err
	}
	return dashboards.Query(ctx, withDB{s.q, s.db}, sql)
}

// withDB runs a dashboard query in the audit database: the dashboards name
// tables without a database (Grafana's data source sets the default one).
type withDB struct {
	q  Querier
	db string
}

func (w withDB) Query(ctx context.Context, sql string, args ...any) (driver.Rows, error) {
	return w.q.Query(ctx, qualify(sql, w.db), args...)
}

var auditTable = regexp.MustCompile(`\bFROM\s+(raw_events|cdc_changes|identity_links|entitlements|decisions|mismatches|sink_actions|dlq|audit_keys)\b`)

// qualify prefixes the audit tables in FROM clauses with db.
func qualify(sql, db string) string {
	return auditTable.ReplaceAllString(sql, "FROM "+db+".$1")
}

func (s *server) fillStat(st *Stat, p dashboards.Panel, res *dashboards.Result, err error) {
	if err == nil && (len(res.Rows) == 0 || len(res.Rows[0]) == 0) {
		err = fmt.Errorf("no value")
	}
	if err != nil {
		st.Error, st.Text = err.Error(), "?"
		return
	}
	v, _ := dashboards.Number(res.Rows[0][0])
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	st.Value, st.Text = v, formatValue(v, p.Unit())
}

func (s *server) fillChart(c *Chart, p dashboards.Panel, res *dashboards.Result, err error, from, to time.Time) {
	if err != nil {
		c.Error = err.Error()
		return
	}
	switch p.Type {
	case "barchart":
		var bars []bar
		for _, row := range res.Rows {
			if len(row) < 2 {
				continue
			}
			label, _ := row[0].(string)
			v, _ := dashboards.Number(row[1])
			bars = append(bars, bar{label, v})
			c.Series = append(c.Series, seriesJSON{Name: label, Points: [][2]float64{{0, v}}})
		}
		c.SVG = barChart(bars, p.Unit())
	default:
		series, err := res.TimeSeries()
		if err != nil {
			c.Error = err.Error()
			return
		}
		for _, sr := range series {
			js := seriesJSON{Name: sr.Name}
			for _, pt := range sr.Points {
				js.Points = append(js.Points, [2]float64{float64(pt.At.Unix()), pt.Value})
			}
			c.Series = append(c.Series, js)
		}
		c.SVG = lineChart(series, from, to, p.Unit())
	}
}

// liveStats are this process's own counters since it started: refused
// webhooks never reach the audit trail, so only the running ingest knows them.
func liveStats() []Stat {
	fams, err := obs.Registry.Gather()
	if err != nil {
		return nil
	}
	sums := map[string]map[string]float64{}
	for _, f := range fams {
		by := map[string]float64{}
		for _, m := range f.GetMetric() {
			label := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "provider" || l.GetName() == "slot" {
					label = l.GetValue()
				}
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			if f.GetName() == "launchready_cdc_slot_lag_bytes" {
				by[label] = math.Max(by[label], v)
			} else {
				by[label] += v
			}
		}
		sums[f.GetName()] = by
	}
	var out []Stat
	received := sums["launchready_ingest_received_total"]
	for _, p := range sortedKeys(received) {
		failed := sums["launchready_ingest_rejected_total"][p] + sums["launchready_ingest_unavailable_total"][p]
		rate := 0.0
		if received[p] > 0 {
			rate = failed / received[p]
		}
		out = append(out, Stat{Title: p + " webhooks failed", Value: rate, Text: fmt.Sprintf("%s of %.0f", formatValue(rate, "percentunit"), received[p]),
			Description: "Refused or unavailable webhook requests since this process started."})
	}
	for _, slot := range sortedKeys(sums["launchready_cdc_slot_lag_bytes"]) {
		v := sums["launchready_cdc_slot_lag_bytes"][slot]
		out = append(out, Stat{Title: "slot " + slot + " lag", Value: v, Text: formatValue(v, "bytes")})
	}
	for _, p := range sortedKeys(sums["launchready_provider_monthly_quota"]) {
		quota := sums["launchready_provider_monthly_quota"][p]
		if quota > 0 {
			used := sums["launchready_provider_monthly_requests_used"][p] / quota
			out = append(out, Stat{Title: p + " monthly quota used", Value: used, Text: formatValue(used, "percentunit")})
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// formatValue renders v in a Grafana unit.
func formatValue(v float64, unit string) string {
	switch unit {
	case "percentunit":
		return trimNum(v*100, 1) + "%"
	case "ms":
		if v >= 1000 {
			return trimNum(v/1000, 2) + " s"
		}
		return trimNum(v, 0) + " ms"
	case "bytes":
		for _, u := range []struct {
			n    float64
			name string
		}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
			if v >= u.n {
				return trimNum(v/u.n, 1) + " " + u.name
			}
		}
		return trimNum(v, 0) + " B"
	}
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return trimNum(v, 2)
}

func trimNum(v float64, prec int) string {
	s := fmt.Sprintf("%.*f", prec, v)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
