package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// StatsQuery is the window [Since, Until) the rates cover (Until defaults to
// now).
type StatsQuery struct {
	Since time.Time
	Until time.Time
}

// ProviderStats are one provider's raw events in the window. Received counts
// every delivery stored, duplicates included; DuplicateRate = Duplicates /
// Received. Webhooks counts the received deliveries that came by webhook.
// Rejected counts the webhook deliveries ingest refused or could not store
// (answered 4xx or 503; from lr.ingest.rejections), by reason in
// RejectedByReason; WebhookFailureRate = Rejected / (Webhooks + Rejected).
type ProviderStats struct {
	Provider           string           `json:"provider"`
	Received           int64            `json:"received"`
	Duplicates         int64            `json:"duplicates"`
	DuplicateRate      float64          `json:"duplicate_rate"`
	Webhooks           int64            `json:"webhooks"`
	Rejected           int64            `json:"rejected"`
	RejectedByReason   map[string]int64 `json:"rejected_by_reason"`
	WebhookFailureRate float64          `json:"webhook_failure_rate"`
}

// MismatchStats: Open is the mismatches whose latest state is open at the end
// of the window, Customers the canonical customers not merged away, Rate =
// Open / Customers. Opened and Closed count transitions within the window.
type MismatchStats struct {
	Open          int64            `json:"open"`
	OpenByKind    map[string]int64 `json:"open_by_kind"`
	Customers     int64            `json:"customers"`
	CustomersOpen int64            `json:"customers_with_open"`
	Rate          float64          `json:"rate"`
	Opened        int64            `json:"opened"`
	Closed        int64            `json:"closed"`
}

// LatencyStats is ingest-to-entitlement latency of the entitlement states
// published in the window: from Entitlement.IngestedAt to the record's Kafka
// timestamp (its updated_at when the broker gave none). P50/P95 are nil when
// no state carried an ingest time.
type LatencyStats struct {
	Count int64    `json:"count"`
	P50MS *float64 `json:"p50_ms"`
	P95MS *float64 `json:"p95_ms"`
}

// SinkStats are one sink provider's action outcomes in the window: Succeeded
// counts status ok, Failed counts error and dlq; ByStatus has every status.
type SinkStats struct {
	Provider  string           `json:"provider"`
	Succeeded int64            `json:"succeeded"`
	Failed    int64            `json:"failed"`
	ByStatus  map[string]int64 `json:"by_status"`
}

// StatsResult is what alerting and the ops page watch.
type StatsResult struct {
	Since       time.Time        `json:"since"`
	Until       time.Time        `json:"until"`
	Providers   []ProviderStats  `json:"providers"`
	Mismatches  MismatchStats    `json:"mismatches"`
	Latency     LatencyStats     `json:"ingest_to_entitlement"`
	Sinks       []SinkStats      `json:"sinks"`
	DeadLetters map[string]int64 `json:"dead_letters"` // by stage
}

// Stats computes the rates of [Since, Until). Every count is of distinct
// record identities, so re-delivered batches do not inflate it.
func Stats(ctx context.Context, q Querier, db string, sq StatsQuery) (*StatsResult, error) {
	if sq.Until.IsZero() {
		sq.Until = time.Now()
	}
	if sq.Since.IsZero() || !sq.Since.Before(sq.Until) {
		return nil, errors.New("stats need a window: since must be before until")
	}
	res := &StatsResult{Since: sq.Since.UTC(), Until: sq.Until.UTC(), DeadLetters: map[string]int64{}}
	res.Mismatches.OpenByKind = map[string]int64{}
	window := "event_date >= toDate(?) AND event_date <= toDate(?) AND at_ms >= ? AND at_ms < ?"
	wargs := []any{sq.Since.UTC().Format("2006-01-02"), sq.Until.UTC().Format("2006-01-02"), sq.Since.UnixMilli(), sq.Until.UnixMilli()}
	untilMS := sq.Until.UnixMilli()

	var mu sync.Mutex
	sinks := map[string]*SinkStats{}
	rejected := map[string]map[string]int64{} // provider → reason → count
	queries := []struct {
		name  string
		query string
		args  []any
		scan  func(driver.Rows) error
	}{
		{"providers", `SELECT provider, count(), sum(duplicate), sum(source = 'webhook') FROM (
			SELECT record_id, any(provider) AS provider, any(duplicate) AS duplicate, any(source) AS source
			FROM ` + db + `.raw_events WHERE ` + window + ` GROUP BY record_id)
			GROUP BY provider ORDER BY provider`, wargs, func(r driver.Rows) error {
			var p ProviderStats
			var n, d, wh uint64
			if err := r.Scan(&p.Provider, &n, &d, &wh); err != nil {
				return err
			}
			p.Received, p.Duplicates, p.Webhooks = int64(n), int64(d), int64(wh)
			p.DuplicateRate = ratio(p.Duplicates, p.Received)
			mu.Lock()
			res.Providers = append(res.Providers, p)
			mu.Unlock()
			return nil
		}},
		{"latency", `SELECT count(), quantilesExact(0.5, 0.95)(latency_ms) FROM (
			SELECT record_id, any(latency_ms) AS latency_ms FROM ` + db + `.entitlements
			WHERE ` + window + ` AND ingested_ms > 0 GROUP BY record_id)`, wargs, func(r driver.Rows) error {
			var n uint64
			var qs []int64
			if err := r.Scan(&n, &qs); err != nil {
				return err
			}
			res.Latency.Count = int64(n)
			if n > 0 && len(qs) == 2 {
				p50, p95 := float64(qs[0]), float64(qs[1])
				res.Latency.P50MS, res.Latency.P95MS = &p50, &p95
			}
			return nil
		}},
		// A mismatch is open when its latest transition up to the end of the
		// window says so; closed wins a tie.
		{"open mismatches", `SELECT kind, count(), uniqExact(customer_id) FROM (
			SELECT mismatch_id, argMax(state, at_ms * 2 + (state = 'closed')) AS state,
				any(kind) AS kind, any(customer_id) AS customer_id
			FROM ` + db + `.mismatches WHERE at_ms < ? GROUP BY mismatch_id)
			WHERE state = 'open' GROUP BY kind`, []any{untilMS}, func(r driver.Rows) error {
			var kind string
			var n, c uint64
			if err := r.Scan(&kind, &n, &c); err != nil {
				return err
			}
			mu.Lock()
			res.Mismatches.OpenByKind[kind] = int64(n)
			res.Mismatches.Open += int64(n)
			mu.Unlock()
			return nil
		}},
		{"customers with open mismatches", `SELECT uniqExact(customer_id) FROM (
			SELECT mismatch_id, argMax(state, at_ms * 2 + (state = 'closed')) AS state, any(customer_id) AS customer_id
			FROM ` + db + `.mismatches WHERE at_ms < ? GROUP BY mismatch_id) WHERE state = 'open'`, []any{untilMS}, func(r driver.Rows) error {
			var n uint64
			err := r.Scan(&n)
			res.Mismatches.CustomersOpen = int64(n)
			return err
		}},
		{"mismatch transitions", `SELECT countIf(state = 'open'), countIf(state = 'closed') FROM (
			SELECT record_id, any(state) AS state FROM ` + db + `.mismatches WHERE ` + window + ` GROUP BY record_id)`, wargs, func(r driver.Rows) error {
			var o, c uint64
			err := r.Scan(&o, &c)
			res.Mismatches.Opened, res.Mismatches.Closed = int64(o), int64(c)
			return err
		}},
		{"customers", `SELECT count() FROM (
			SELECT customer_id, argMax(merged_into, version) AS merged FROM ` + db + `.identity_links
			WHERE key_kind = 'customer' AND at_ms < ? GROUP BY customer_id) WHERE merged = ''`, []any{untilMS}, func(r driver.Rows) error {
			var n uint64
			err := r.Scan(&n)
			res.Mismatches.Customers = int64(n)
			return err
		}},
		{"sinks", `SELECT provider, status, count() FROM (
			SELECT record_id, any(provider) AS provider, any(status) AS status FROM ` + db + `.sink_actions
			WHERE ` + window + ` GROUP BY record_id) GROUP BY provider, status`, wargs, func(r driver.Rows) error {
			var p, status string
			var n uint64
			if err := r.Scan(&p, &status, &n); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			s := sinks[p]
			if s == nil {
				s = &SinkStats{Provider: p, ByStatus: map[string]int64{}}
				sinks[p] = s
			}
			s.ByStatus[status] += int64(n)
			switch status {
			case "ok":
				s.Succeeded += int64(n)
			case "error", "dlq":
				s.Failed += int64(n)
			}
			return nil
		}},
		// A count belongs to the window its last refusal falls in.
		{"rejected", `SELECT provider, reason, sum(n) FROM (
			SELECT record_id, any(provider) AS provider, any(reason) AS reason, any(count) AS n
			FROM ` + db + `.rejected_webhooks WHERE ` + window + ` GROUP BY record_id)
			GROUP BY provider, reason`, wargs, func(r driver.Rows) error {
			var p, reason string
			var n int64
			if err := r.Scan(&p, &reason, &n); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if rejected[p] == nil {
				rejected[p] = map[string]int64{}
			}
			rejected[p][reason] += n
			return nil
		}},
		{"dead letters", `SELECT stage, count() FROM (
			SELECT record_id, any(stage) AS stage FROM ` + db + `.dlq WHERE ` + window + ` GROUP BY record_id)
			GROUP BY stage`, wargs, func(r driver.Rows) error {
			var stage string
			var n uint64
			if err := r.Scan(&stage, &n); err != nil {
				return err
			}
			mu.Lock()
			res.DeadLetters[stage] = int64(n)
			mu.Unlock()
			return nil
		}},
	}
	errs := make([]error, len(queries))
	var wg sync.WaitGroup
	for i, qu := range queries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := each(ctx, q, qu.query, qu.args, qu.scan); err != nil {
				errs[i] = fmt.Errorf("%s: %w", qu.name, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	res.Mismatches.Rate = ratio(res.Mismatches.Open, res.Mismatches.Customers)
	for _, s := range sinks {
		res.Sinks = append(res.Sinks, *s)
	}
	sort.Slice(res.Sinks, func(i, j int) bool { return res.Sinks[i].Provider < res.Sinks[j].Provider })
	sort.Slice(res.Providers, func(i, j int) bool { return res.Providers[i].Provider < res.Providers[j].Provider })
	res.addRejected(rejected)
	if res.Providers == nil {
		res.Providers = []ProviderStats{}
	}
	if res.Sinks == nil {
		res.Sinks = []SinkStats{}
	}
	return res, nil
}

// addRejected fills in the rejected counts and the webhook failure rates; a
// provider that only had rejections gets a row of its own.
func (r *StatsResult) addRejected(rejected map[string]map[string]int64) {
	for name := range rejected {
		if !slices.ContainsFunc(r.Providers, func(p ProviderStats) bool { return p.Provider == name }) {
			r.Providers = append(r.Providers, ProviderStats{Provider: name})
		}
	}
	for i := range r.Providers {
		p := &r.Providers[i]
		p.RejectedByReason = map[string]int64{}
		for reason, n := range rejected[p.Provider] {
			p.RejectedByReason[reason] = n
			p.Rejected += n
		}
		p.WebhookFailureRate = ratio(p.Rejected, p.Webhooks+p.Rejected)
	}
	sort.Slice(r.Providers, func(i, j int) bool { return r.Providers[i].Provider < r.Providers[j].Provider })
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
