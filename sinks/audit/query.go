package audit

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Querier is the part of a ClickHouse connection the queries use
// (clickhouse-go's driver.Conn has it). Query must be safe for concurrent use.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// in renders "(?, ?, …)" for len(vs) values and returns them as arguments;
// the driver quotes each one. vs must not be empty.
func in(vs []string) (string, []any) {
	args := make([]any, len(vs))
	for i, v := range vs {
		args[i] = v
	}
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", len(vs)), ", ") + ")", args
}

// each runs query and calls scan for every row.
func each(ctx context.Context, q Querier, query string, args []any, scan func(driver.Rows) error) error {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("audit query: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("audit query: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit query: %w", err)
	}
	return nil
}

// Link is one key linked to a canonical customer.
type Link struct {
	Kind       string    `json:"kind"` // customer, email, user, stripe, circle, kit, session, merged_into
	Key        string    `json:"key"`
	CustomerID string    `json:"customer_id"`
	Version    int64     `json:"version"` // identity version that first carried the link
	At         time.Time `json:"at"`
}

// identity is what the identity rows say about a set of customers.
type identity struct {
	customers []string // canonical ids, merges followed both ways
	links     []Link   // every key ever linked to one of them
	keys      []string // every key: the customers, their emails and provider ids
	current   map[string]currentIdentity
}

// currentIdentity is the latest version of one customer's identity record.
type currentIdentity struct {
	version    int64
	email      string
	mergedInto string
	atMS       int64
}

// resolve finds the customers key belongs to (an email, a canonical id or a
// provider id), following merges both ways, and everything linked to them.
// One query answers the common case: the identity rows of the customers
// holding key, of those they were merged into and of those merged into
// them. Only when merges appear is it repeated over the whole family until
// it stops growing. The key itself stays among the keys, so rows filed under
// it (an event whose sender was never linked) are found too.
func resolve(ctx context.Context, q Querier, db string, key string) (*identity, error) {
	var id *identity
	frontier := []string{key}
	for round := 0; round < 4; round++ {
		next := &identity{current: map[string]currentIdentity{}}
		list, args := in(frontier)
		links := db + ".identity_links"
		holders := "SELECT customer_id FROM " + links + " WHERE key IN " + list
		all := append(append(append([]any{}, args...), args...), args...)
		merges := false
		err := each(ctx, q, `SELECT key_kind, key, customer_id, min(version), min(at_ms),
			argMax(email, version), argMax(merged_into, version), max(version), max(at_ms)
			FROM `+links+` WHERE customer_id IN (
				`+holders+`
				UNION ALL SELECT merged_into FROM `+links+` WHERE key IN `+list+`
				UNION ALL SELECT customer_id FROM `+links+` WHERE key_kind = 'merged_into' AND key IN (`+holders+`))
			GROUP BY key_kind, key, customer_id ORDER BY min(at_ms), key_kind, key`, all, func(r driver.Rows) error {
			var l Link
			var atMS, lastAtMS, lastVersion int64
			var email, merged string
			if err := r.Scan(&l.Kind, &l.Key, &l.CustomerID, &l.Version, &atMS, &email, &merged, &lastVersion, &lastAtMS); err != nil {
				return err
			}
			l.At = time.UnixMilli(atMS).UTC()
			next.links = append(next.links, l)
			if !contains(next.customers, l.CustomerID) {
				next.customers = append(next.customers, l.CustomerID)
			}
			if l.Kind == "merged_into" {
				merges = true
			}
			if l.Kind == "customer" {
				next.current[l.CustomerID] = currentIdentity{version: lastVersion, email: email, mergedInto: merged, atMS: lastAtMS}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		grew := id == nil || len(next.customers) > len(id.customers)
		id = next
		if !merges || !grew {
			break
		}
		frontier = append([]string{key}, id.customers...)
	}
	slices.Sort(id.customers)
	id.keys = []string{key}
	for _, l := range id.links {
		if !contains(id.keys, l.Key) {
			id.keys = append(id.keys, l.Key)
		}
	}
	return id, nil
}

// keyFilter is the WHERE clause selecting the rows of tbl filed under keys,
// or naming one of them through audit_keys (an email in a Stripe event
// filed under its customer id). Both halves read primary indexes.
func keyFilter(db, tbl string, keys []string) (string, []any) {
	list, args := in(keys)
	if tbl != "raw_events" && tbl != "cdc_changes" { // the only tables audit_keys indexes
		return "customer_key IN " + list, args
	}
	sub := "SELECT %s FROM " + db + ".audit_keys WHERE key IN " + list + " AND tbl = '" + tbl + "'"
	cond := "(customer_key IN " + list + " OR customer_key IN (" + fmt.Sprintf(sub, "customer_key") + "))" +
		" AND (customer_key IN " + list + " OR record_id IN (" + fmt.Sprintf(sub, "record_id") + "))"
	var all []any
	for i := 0; i < 4; i++ {
		all = append(all, args...)
	}
	return cond, all
}

// timeFilter restricts at_ms to [since, until) when they are set.
func timeFilter(since, until time.Time) (string, []any) {
	var conds []string
	var args []any
	if !since.IsZero() {
		conds = append(conds, "event_date >= toDate(?) AND at_ms >= ?")
		args = append(args, since.UTC().Format("2006-01-02"), since.UnixMilli())
	}
	if !until.IsZero() {
		conds = append(conds, "at_ms < ?")
		args = append(args, until.UnixMilli())
	}
	if len(conds) == 0 {
		return "1", nil
	}
	return strings.Join(conds, " AND "), args
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
