package alerts

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// Alert names, the same as the alert names in dashboards/alerts.rules.yml.
const (
	AlertWebhookFailures = "LaunchreadyWebhookFailureRate"
	AlertDuplicateSpike  = "LaunchreadyDuplicateSpike"
	AlertMismatchRate    = "LaunchreadyMismatchRate"
	AlertRefundAccess    = "LaunchreadyRefundAccessGranted"
	AlertBacklogGrowing  = "LaunchreadyQueueBacklogGrowing"
	AlertSlotLag         = "LaunchreadySlotLag"
	AlertProviderSilent  = "LaunchreadyProviderSilent"
)

// rule is one alert: how long its fire condition must hold before it fires
// (Prometheus' for:), and how it is measured.
type rule struct {
	name       string
	summary    string
	pendingFor time.Duration
	check      func(ctx context.Context, now time.Time) ([]Sample, error)
}

// PendingFor is each alert's for: duration, shared with the rule file.
var PendingFor = map[string]time.Duration{
	AlertWebhookFailures: 0, // the 15m window and the minimum count already smooth it
	AlertDuplicateSpike:  0,
	AlertMismatchRate:    15 * time.Minute, // mismatches open briefly while sinks catch up
	AlertRefundAccess:    0,                // the grace period is part of the measure
	AlertBacklogGrowing:  0,                // the window is part of the measure
	AlertSlotLag:         5 * time.Minute,
	AlertProviderSilent:  0,
}

func (e *Evaluator) rules() []*rule {
	th := e.th
	rs := []*rule{
		{name: AlertWebhookFailures, summary: fmt.Sprintf("webhook failure rate over %s in %s", pct(th.WebhookFailureRate), dur(th.WebhookFailureWindow)), check: e.webhookFailures},
		{name: AlertDuplicateSpike, summary: fmt.Sprintf("duplicate rate over %s× its %s baseline", num(th.DuplicateFactor), dur(th.DuplicateBaseline)), check: e.duplicateSpike},
		{name: AlertMismatchRate, summary: fmt.Sprintf("open mismatches over %s of customers", pct(th.MismatchRate)), check: e.mismatchRate},
		{name: AlertRefundAccess, summary: fmt.Sprintf("refunded customers still have access %s after the refund", dur(th.RefundGrace)), check: e.refundAccess},
	}
	if e.src.Backlog != nil {
		rs = append(rs, &rule{name: AlertBacklogGrowing, summary: fmt.Sprintf("consumer backlog growing for %s", dur(th.BacklogWindow)), check: e.backlogGrowing})
	}
	if e.src.SlotLag != nil {
		rs = append(rs, &rule{name: AlertSlotLag, summary: fmt.Sprintf("replication slot lag over %s", bytesText(th.SlotLagBytes)), check: e.slotLag})
	}
	rs = append(rs, &rule{name: AlertProviderSilent, summary: fmt.Sprintf("no event from a provider for %s", dur(th.Silence)), check: e.providerSilent})
	for _, r := range rs {
		r.pendingFor = PendingFor[r.name]
	}
	return rs
}

func (e *Evaluator) webhookFailures(ctx context.Context, now time.Time) ([]Sample, error) {
	th := e.th
	d, err := WebhookDeliveries(ctx, e.src.CH, e.src.DB, e.src.TopicPrefix, now.Add(-th.WebhookFailureWindow), now)
	if err != nil {
		return nil, err
	}
	// Refused deliveries come from the audit trail, unless a metrics
	// source is configured instead.
	var failed, received map[string]int64
	if e.src.Rejected != nil {
		if failed, received, err = e.src.Rejected.Failed(ctx, now, th.WebhookFailureWindow); err != nil {
			// Refused deliveries are unknown this time; dead letters still count.
			e.log.WarnContext(ctx, "refused webhook counts unavailable", "err", err)
		}
	} else {
		failed = map[string]int64{}
		for p, x := range d {
			if x.Refused > 0 {
				failed[p] = x.Refused
			}
		}
	}
	providers := map[string]bool{}
	for p := range d {
		providers[p] = true
	}
	for p := range failed {
		providers[p] = true
	}
	var out []Sample
	for _, p := range sortedKeys(providers) {
		dl := int64(0)
		attempts := int64(0)
		if x := d[p]; x != nil {
			dl, attempts = x.DeadLetters, x.Webhooks
		}
		failures := failed[p] + dl
		if received[p] > 0 {
			attempts = received[p]
		} else {
			attempts += failed[p]
		}
		if failures == 0 && attempts == 0 {
			continue
		}
		rate := 1.0
		if attempts > 0 {
			rate = float64(failures) / float64(attempts)
		}
		out = append(out, Sample{
			Labels: "provider=" + p, Value: rate,
			Firing: rate > th.WebhookFailureRate && failures >= th.WebhookFailureMin,
			Clear:  rate <= th.WebhookFailureRate*th.ResolveRatio || failures < th.WebhookFailureMin,
			Text: fmt.Sprintf("%d of %d %s deliveries failed in the last %s (%s; threshold %s): %d refused, %d dead-lettered",
				failures, attempts, p, dur(th.WebhookFailureWindow), pct(rate), pct(th.WebhookFailureRate), failed[p], dl),
		})
	}
	return out, nil
}

func (e *Evaluator) duplicateSpike(ctx context.Context, now time.Time) ([]Sample, error) {
	th := e.th
	counts, err := DuplicateCounts(ctx, e.src.CH, e.src.DB, now, th.DuplicateWindow, th.DuplicateBaseline)
	if err != nil {
		return nil, err
	}
	var out []Sample
	for _, p := range sortedKeys(counts) {
		c := counts[p]
		base := max(c.BaselineRate(), th.DuplicateFloor)
		rate := c.RecentRate()
		out = append(out, Sample{
			Labels: "provider=" + p, Value: rate / base,
			Firing: rate > th.DuplicateFactor*base && c.RecentDuplicates >= th.DuplicateMin,
			Clear:  rate <= th.DuplicateFactor*th.ResolveRatio*base || c.RecentDuplicates < th.DuplicateMin,
			Text: fmt.Sprintf("%s duplicates (%d of %d) in the last %s, %s× the %s baseline %s (threshold %s×)",
				pct(rate), c.RecentDuplicates, c.Recent, dur(th.DuplicateWindow), num(rate/base), dur(th.DuplicateBaseline), pct(c.BaselineRate()), num(th.DuplicateFactor)),
		})
	}
	return out, nil
}

func (e *Evaluator) mismatchRate(ctx context.Context, now time.Time) ([]Sample, error) {
	th := e.th
	m, err := MismatchCounts(ctx, e.src.CH, e.src.DB, now)
	if err != nil {
		return nil, err
	}
	rate := m.Rate()
	if m.Customers == 0 && m.Open > 0 {
		rate = 1
	}
	var kinds []string
	for _, k := range sortedKeys(m.ByKind) {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, m.ByKind[k]))
	}
	text := fmt.Sprintf("%d open mismatches for %d customers (%s; threshold %s)", m.Open, m.Customers, pct(rate), pct(th.MismatchRate))
	if len(kinds) > 0 {
		text += ": " + strings.Join(kinds, ", ")
	}
	return []Sample{{
		Value:  rate,
		Firing: rate > th.MismatchRate && m.Open >= th.MismatchMin,
		Clear:  rate <= th.MismatchRate*th.ResolveRatio || m.Open < th.MismatchMin,
		Text:   text,
	}}, nil
}

func (e *Evaluator) refundAccess(ctx context.Context, now time.Time) ([]Sample, error) {
	rs, err := RefundsWithAccess(ctx, e.src.CH, e.src.DB, now, e.th.RefundGrace, e.th.RefundLookback)
	if err != nil {
		return nil, err
	}
	var parts []string
	for i, r := range rs {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(rs)-5))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%s, refunded %s): %s", r.Customer, r.Stripe, r.Refunded.Format("2006-01-02 15:04 UTC"), r.Reason))
	}
	text := "no refunded customer has access"
	if len(rs) > 0 {
		text = fmt.Sprintf("%d customer(s): %s", len(rs), strings.Join(parts, "; "))
	}
	return []Sample{{Value: float64(len(rs)), Firing: len(rs) > 0, Clear: len(rs) == 0, Text: text}}, nil
}

type point struct {
	at  time.Time
	lag int64
}

func (e *Evaluator) backlogGrowing(ctx context.Context, now time.Time) ([]Sample, error) {
	th := e.th
	lags, err := e.src.Backlog.Backlog(ctx)
	if err != nil {
		return nil, err
	}
	start := now.Add(-th.BacklogWindow)
	for g, lag := range lags {
		e.backlog[g] = append(e.backlog[g], point{now, lag})
	}
	var out []Sample
	for _, g := range sortedKeys(e.backlog) {
		pts := e.backlog[g]
		// Keep the newest point at or before the window's start, and all after.
		i := sort.Search(len(pts), func(i int) bool { return pts[i].at.After(start) })
		if i > 0 {
			pts = pts[i-1:]
		}
		e.backlog[g] = pts
		if _, ok := lags[g]; !ok {
			if pts[len(pts)-1].at.Before(start) {
				delete(e.backlog, g) // the group is gone
			}
			continue
		}
		first, last := pts[0], pts[len(pts)-1]
		low := last.lag
		for _, p := range pts {
			low = min(low, p.lag)
		}
		covered := !first.at.After(start)
		growing := covered && last.lag > first.lag
		out = append(out, Sample{
			Labels: "group=" + g, Value: float64(last.lag),
			Firing: growing && low >= th.BacklogMin,
			Clear:  !growing || float64(low) < float64(th.BacklogMin)*th.ResolveRatio,
			Text: fmt.Sprintf("backlog %d records, %+d since %s (lowest %d; threshold: growing for %s above %d)",
				last.lag, last.lag-first.lag, first.at.UTC().Format("15:04 UTC"), low, dur(th.BacklogWindow), th.BacklogMin),
		})
	}
	return out, nil
}

func (e *Evaluator) slotLag(ctx context.Context, now time.Time) ([]Sample, error) {
	th := e.th
	lags, err := e.src.SlotLag.SlotLag(ctx)
	if err != nil {
		return nil, err
	}
	var out []Sample
	for _, s := range sortedKeys(lags) {
		lag := lags[s]
		out = append(out, Sample{
			Labels: "slot=" + s, Value: float64(lag),
			Firing: lag > th.SlotLagBytes,
			Clear:  float64(lag) <= float64(th.SlotLagBytes)*th.ResolveRatio,
			Text:   fmt.Sprintf("slot %s is %s behind (threshold %s)", s, bytesText(lag), bytesText(th.SlotLagBytes)),
		})
	}
	return out, nil
}

func (e *Evaluator) providerSilent(ctx context.Context, now time.Time) ([]Sample, error) {
	th := e.th
	last, err := LastEvents(ctx, e.src.CH, e.src.DB, now, th.SilenceLookback)
	if err != nil {
		return nil, err
	}
	var out []Sample
	for _, p := range sortedKeys(last) {
		quiet := now.Sub(last[p])
		out = append(out, Sample{
			Labels: "provider=" + p, Value: quiet.Seconds(),
			Firing: quiet > th.Silence, Clear: quiet <= th.Silence,
			Text: fmt.Sprintf("last %s event %s, %s ago (threshold %s)", p, last[p].Format("2006-01-02 15:04 UTC"), quiet.Round(time.Minute), dur(th.Silence)),
		})
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func pct(x float64) string {
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.2f", x*100), "0"), ".0") + "%"
}

func num(x float64) string {
	return strings.TrimSuffix(strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", x), "0"), "."), ".")
}

// dur formats a duration the way Prometheus writes one: 15m, 24h, 90s.
func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return num(float64(n)/(1<<30)) + " GiB"
	case n >= 1<<20:
		return num(float64(n)/(1<<20)) + " MiB"
	case n >= 1<<10:
		return num(float64(n)/(1<<10)) + " KiB"
	}
	return fmt.Sprintf("%d B", n)
}

//go:embed rules.yml.tmpl
var rulesTemplate string

// RenderRules writes the Prometheus rule file for th: the same thresholds
// and for: durations the evaluator uses.
func RenderRules(th Thresholds) ([]byte, error) {
	if err := th.Validate(); err != nil {
		return nil, err
	}
	t, err := template.New("rules").Delims("<%", "%>").Funcs(template.FuncMap{
		"dur":   dur,
		"pct":   pct,
		"bytes": bytesText,
		"num":   func(x float64) string { return strconv.FormatFloat(x, 'g', 12, 64) },
		"mul":   func(a, b float64) float64 { return a * b },
		"float": func(n int64) float64 { return float64(n) },
		"for": func(name string) (string, error) {
			d, ok := PendingFor[name]
			if !ok {
				return "", fmt.Errorf("no for: duration for %s", name)
			}
			return dur(d), nil
		},
	}).Parse(rulesTemplate)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, th); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
