package alerts

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Querier is the part of a ClickHouse connection the checks use
// (clickhouse-go's driver.Conn has it). Safe for concurrent use.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// Every query counts distinct record identities (GROUP BY record_id): the
// audit tables may hold a re-inserted copy of a row until ClickHouse merges
// them (schemas/clickhouse/001_raw_events.sql).

func each(ctx context.Context, q Querier, query string, args []any, scan func(driver.Rows) error) error {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("clickhouse: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	return nil
}

// window is the WHERE clause of [since, until) on a table with event_date
// and at_ms, using the partition key first.
func window(since, until time.Time) (string, []any) {
	return "event_date >= toDate(?) AND event_date <= toDate(?) AND at_ms >= ? AND at_ms < ?",
		[]any{since.UTC().Format("2006-01-02"), until.UTC().Format("2006-01-02"), since.UnixMilli(), until.UnixMilli()}
}

func in(vs []string) (string, []any) {
	args := make([]any, len(vs))
	for i, v := range vs {
		args[i] = v
	}
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", len(vs)), ", ") + ")", args
}

// Deliveries are one provider's webhook deliveries in a window: Webhooks
// stored by ingest (webhook and push sources), Refused by ingest (answered
// 4xx or 503; counted in rejected_webhooks), DeadLetters of its raw topic
// that a later stage could not handle.
type Deliveries struct {
	Webhooks    int64
	Refused     int64
	DeadLetters int64
}

// WebhookDeliveries counts each provider's stored webhook deliveries and the
// dead letters of its raw topic (<prefix>raw.<provider>) in [since, until).
func WebhookDeliveries(ctx context.Context, q Querier, db, prefix string, since, until time.Time) (map[string]*Deliveries, error) {
	out := map[string]*Deliveries{}
	get := func(p string) *Deliveries {
		if out[p] == nil {
			out[p] = &Deliveries{}
		}
		return out[p]
	}
	w, args := window(since, until)
	err := each(ctx, q, `SELECT p, count() FROM (
		SELECT record_id, any(provider) AS p FROM `+db+`.raw_events
		WHERE `+w+` AND source IN ('webhook', 'push') GROUP BY record_id) GROUP BY p`, args, func(r driver.Rows) error {
		var p string
		var n uint64
		if err := r.Scan(&p, &n); err != nil {
			return err
		}
		get(p).Webhooks = int64(n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webhook deliveries: %w", err)
	}
	err = each(ctx, q, `SELECT p, sum(n) FROM (
		SELECT record_id, any(provider) AS p, any(count) AS n FROM `+db+`.rejected_webhooks
		WHERE `+w+` GROUP BY record_id) GROUP BY p`, args, func(r driver.Rows) error {
		var p string
		var n int64
		if err := r.Scan(&p, &n); err != nil {
			return err
		}
		get(p).Refused = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("refused deliveries: %w", err)
	}
	err = each(ctx, q, `SELECT st, count() FROM (
		SELECT record_id, any(source_topic) AS st FROM `+db+`.dlq
		WHERE `+w+` AND startsWith(source_topic, ?) GROUP BY record_id) GROUP BY st`, append(args, prefix+"raw."), func(r driver.Rows) error {
		var topic string
		var n uint64
		if err := r.Scan(&topic, &n); err != nil {
			return err
		}
		if p := strings.TrimPrefix(topic, prefix+"raw."); p != "" {
			get(p).DeadLetters += int64(n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return out, nil
}

// Duplicates are one provider's raw events and duplicates in the recent
// window and in the baseline window (which includes the recent one).
type Duplicates struct {
	Recent, RecentDuplicates     int64
	Baseline, BaselineDuplicates int64
}

// RecentRate is the share of duplicates in the recent window.
func (d Duplicates) RecentRate() float64 { return ratio(d.RecentDuplicates, d.Recent) }

// BaselineRate is the share of duplicates in the baseline window.
func (d Duplicates) BaselineRate() float64 { return ratio(d.BaselineDuplicates, d.Baseline) }

// DuplicateCounts counts raw events and duplicates per provider over the
// baseline window ending at now, and over its last `recent`.
func DuplicateCounts(ctx context.Context, q Querier, db string, now time.Time, recent, baseline time.Duration) (map[string]Duplicates, error) {
	out := map[string]Duplicates{}
	w, args := window(now.Add(-baseline), now)
	err := each(ctx, q, `SELECT p, countIf(t >= ?), sumIf(d, t >= ?), count(), sum(d) FROM (
		SELECT record_id, any(provider) AS p, any(duplicate) AS d, any(at_ms) AS t FROM `+db+`.raw_events
		WHERE `+w+` GROUP BY record_id) GROUP BY p`,
		append([]any{now.Add(-recent).UnixMilli(), now.Add(-recent).UnixMilli()}, args...), func(r driver.Rows) error {
			var p string
			var rn, rd, bn, bd uint64
			if err := r.Scan(&p, &rn, &rd, &bn, &bd); err != nil {
				return err
			}
			out[p] = Duplicates{Recent: int64(rn), RecentDuplicates: int64(rd), Baseline: int64(bn), BaselineDuplicates: int64(bd)}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("duplicates: %w", err)
	}
	return out, nil
}

// Mismatches is the open mismatches at a moment and the customers they are
// measured against (canonical customers not merged away).
type Mismatches struct {
	Open      int64
	ByKind    map[string]int64
	Customers int64
}

// Rate is open mismatches per customer.
func (m Mismatches) Rate() float64 { return ratio(m.Open, m.Customers) }

// openMismatchesSQL selects the mismatches whose latest transition before
// ? is open; closed wins a tie (the same rule as sinks/audit).
const openMismatchesSQL = `SELECT mismatch_id, any(kind) AS k, any(customer_id) AS c,
	argMax(state, at_ms * 2 + (state = 'closed')) AS st, max(at_ms) AS last_ms, argMax(detail, at_ms) AS d, argMax(system, at_ms) AS sys
	FROM %s.mismatches WHERE at_ms < ? GROUP BY mismatch_id`

// MismatchCounts counts open mismatches by kind and customers at now.
func MismatchCounts(ctx context.Context, q Querier, db string, now time.Time) (Mismatches, error) {
	m := Mismatches{ByKind: map[string]int64{}}
	err := each(ctx, q, `SELECT k, count() FROM (`+fmt.Sprintf(openMismatchesSQL, db)+`) WHERE st = 'open' GROUP BY k`,
		[]any{now.UnixMilli()}, func(r driver.Rows) error {
			var k string
			var n uint64
			if err := r.Scan(&k, &n); err != nil {
				return err
			}
			m.ByKind[k] = int64(n)
			m.Open += int64(n)
			return nil
		})
	if err != nil {
		return m, fmt.Errorf("open mismatches: %w", err)
	}
	err = each(ctx, q, `SELECT count() FROM (
		SELECT customer_id, argMax(merged_into, version) AS merged FROM `+db+`.identity_links
		WHERE key_kind = 'customer' AND at_ms < ? GROUP BY customer_id) WHERE merged = ''`, []any{now.UnixMilli()}, func(r driver.Rows) error {
		var n uint64
		err := r.Scan(&n)
		m.Customers = int64(n)
		return err
	})
	if err != nil {
		return m, fmt.Errorf("customers: %w", err)
	}
	return m, nil
}

// OpenMismatch is one open mismatch, for the ops page.
type OpenMismatch struct {
	ID, Customer, Kind, System, Detail string
	Since                              time.Time // its latest transition
}

// OpenMismatchList lists up to limit open mismatches at now, newest first.
func OpenMismatchList(ctx context.Context, q Querier, db string, now time.Time, limit int) ([]OpenMismatch, error) {
	var out []OpenMismatch
	err := each(ctx, q, `SELECT mismatch_id, c, k, sys, d, last_ms FROM (`+fmt.Sprintf(openMismatchesSQL, db)+`)
		WHERE st = 'open' ORDER BY last_ms DESC, mismatch_id LIMIT ?`, []any{now.UnixMilli(), limit}, func(r driver.Rows) error {
		var m OpenMismatch
		var ms int64
		if err := r.Scan(&m.ID, &m.Customer, &m.Kind, &m.System, &m.Detail, &ms); err != nil {
			return err
		}
		m.Since = time.UnixMilli(ms).UTC()
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open mismatches: %w", err)
	}
	return out, nil
}

// LastEvents returns, per provider that sent anything within lookback of
// now, the time of its newest raw event.
func LastEvents(ctx context.Context, q Querier, db string, now time.Time, lookback time.Duration) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	w, args := window(now.Add(-lookback), now)
	err := each(ctx, q, `SELECT provider, max(at_ms) FROM `+db+`.raw_events WHERE `+w+` GROUP BY provider`, args, func(r driver.Rows) error {
		var p string
		var ms int64
		if err := r.Scan(&p, &ms); err != nil {
			return err
		}
		out[p] = time.UnixMilli(ms).UTC()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("last events: %w", err)
	}
	return out, nil
}

// RefundAccess is a customer fully refunded more than the grace period ago
// who still has access.
type RefundAccess struct {
	Customer string    `json:"customer"`
	Stripe   string    `json:"stripe_customer"`
	Refunded time.Time `json:"refunded_at"`
	Reason   string    `json:"reason"`
}

// fullRefund matches a charge.refunded body of a full refund: the charge's
// "refunded" flag is true (a partial refund leaves it false; Stripe sends
// previous_attributes.refunded only when it changed, i.e. false).
const fullRefund = `"refunded":\s*true`

// RefundsWithAccess finds customers whose charge was fully refunded (a
// charge.refunded Stripe event received between lookback and grace before
// now) and who, at now, still have access: their newest entitlement grants
// access and no newer billing event explains it (the reconciler did not
// revoke), or Circle still grants access (an open circle_access_not_paid
// mismatch: the sink did not remove it).
func RefundsWithAccess(ctx context.Context, q Querier, db string, now time.Time, grace, lookback time.Duration) ([]RefundAccess, error) {
	type refund struct {
		atMS, providerMS int64
	}
	refunds := map[string]refund{} // by Stripe customer
	w, args := window(now.Add(-lookback), now.Add(-grace))
	err := each(ctx, q, `SELECT ck, min(t), max(pm) FROM (
		SELECT record_id, any(customer_key) AS ck, any(at_ms) AS t, any(provider_ms) AS pm FROM `+db+`.raw_events
		WHERE `+w+` AND provider = 'stripe' AND type = 'charge.refunded' AND duplicate = 0 AND match(payload, ?)
		GROUP BY record_id) WHERE ck != '' GROUP BY ck`, append(args, fullRefund), func(r driver.Rows) error {
		var ck string
		var rf refund
		if err := r.Scan(&ck, &rf.atMS, &rf.providerMS); err != nil {
			return err
		}
		refunds[ck] = rf
		return nil
	})
	if err != nil || len(refunds) == 0 {
		return nil, wrap("refunds", err)
	}
	keys := make([]string, 0, len(refunds))
	for k := range refunds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	list, largs := in(keys)
	byCustomer := map[string]string{} // canonical customer → Stripe customer
	err = each(ctx, q, `SELECT DISTINCT key, customer_id FROM `+db+`.identity_links WHERE key IN `+list+` AND key_kind = 'stripe'`, largs, func(r driver.Rows) error {
		var k, c string
		if err := r.Scan(&k, &c); err != nil {
			return err
		}
		byCustomer[c] = k
		return nil
	})
	if err != nil || len(byCustomer) == 0 {
		return nil, wrap("refunded customers", err)
	}
	customers := make([]string, 0, len(byCustomer))
	for c := range byCustomer {
		customers = append(customers, c)
	}
	sort.Strings(customers)
	clist, cargs := in(customers)
	reasons := map[string]string{}
	err = each(ctx, q, `SELECT customer_id, argMax(access, version), argMax(last_event_ms, version), argMax(status, version),
		argMax(deleted, version), max(version) FROM `+db+`.entitlements WHERE customer_id IN `+clist+` GROUP BY customer_id`, cargs, func(r driver.Rows) error {
		var c, status string
		var access, deleted uint8
		var lastMS, version int64
		if err := r.Scan(&c, &access, &lastMS, &status, &deleted, &version); err != nil {
			return err
		}
		if access == 1 && deleted == 0 && lastMS <= refunds[byCustomer[c]].providerMS {
			reasons[c] = fmt.Sprintf("entitlement v%d still grants access (status %s)", version, status)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("entitlements", err)
	}
	err = each(ctx, q, `SELECT c FROM (
		SELECT mismatch_id, customer_id AS c, any(kind) AS k, argMax(state, at_ms * 2 + (state = 'closed')) AS st
		FROM `+db+`.mismatches WHERE customer_id IN `+clist+` AND at_ms < ? GROUP BY mismatch_id, customer_id)
		WHERE st = 'open' AND k = 'circle_access_not_paid'`, append(cargs, now.UnixMilli()), func(r driver.Rows) error {
		var c string
		if err := r.Scan(&c); err != nil {
			return err
		}
		reasons[c] = strings.TrimPrefix(reasons[c]+"; Circle still grants access (open circle_access_not_paid mismatch)", "; ")
		return nil
	})
	if err != nil {
		return nil, wrap("mismatches", err)
	}
	var out []RefundAccess
	for _, c := range customers {
		if reasons[c] == "" {
			continue
		}
		k := byCustomer[c]
		out = append(out, RefundAccess{Customer: c, Stripe: k, Refunded: time.UnixMilli(refunds[k].atMS).UTC(), Reason: reasons[c]})
	}
	return out, nil
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
