package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Seen is one sighting of an event identity to record.
type Seen struct {
	Key string    // schemas.RawEvent.DedupKey(): provider:event id
	At  time.Time // when it was received
}

// Dedup is the durable duplicate-detection window: lr_seen_events in the
// state database, one row per provider event identity with the time it was
// first seen and how often it was seen since. It survives restarts and is
// shared by every ingest process of a deployment.
//
// Cost at webhook rates: each request needs one lookup and one upsert. Both
// go through a group commit (see group): concurrent requests share one
// `WHERE dedup_key = ANY($1)` and one `INSERT … SELECT unnest(…) ON CONFLICT`
// statement, so Postgres sees a few hundred statements a second at
// thousands of requests a second.
//
// Within one process, Claim serialises requests carrying the same identity,
// so two concurrent deliveries of one event yield one original and one
// flagged duplicate rather than two originals. Across processes the race
// remains (two originals); downstream dedups by event id regardless.
//
// Rows older than the window are ignored by Lookup and deleted by Prune.
type Dedup struct {
	pool   *pgxpool.Pool
	window time.Duration
	log    *slog.Logger
	now    func() time.Time

	lookups *group[string, map[string]time.Time]
	records *group[Seen, struct{}]
	claims
}

// NewDedup returns the window over lr_seen_events (001_state.sql) in pool.
func NewDedup(pool *pgxpool.Pool, window time.Duration, log *slog.Logger) *Dedup {
	d := &Dedup{pool: pool, window: window, log: log, now: time.Now}
	d.lookups = newGroup(d.lookup, 4000, 2, 10*time.Second)
	d.records = newGroup(d.record, 4000, 1, 10*time.Second)
	return d
}

// claims serialises the holders of the same keys within one process.
type claims struct {
	mu       sync.Mutex
	inflight map[string]chan struct{}
}

// Claim marks keys as being handled by the caller until release is called,
// waiting first for any other holder of one of them to release. It never
// holds some keys while waiting for others, so it cannot deadlock. Blocks.
func (d *claims) Claim(ctx context.Context, keys []string) (release func(), err error) {
	for {
		d.mu.Lock()
		if d.inflight == nil {
			d.inflight = map[string]chan struct{}{}
		}
		var busy chan struct{}
		for _, k := range keys {
			if ch, ok := d.inflight[k]; ok {
				busy = ch
				break
			}
		}
		if busy == nil {
			mine := make(chan struct{})
			for _, k := range keys {
				d.inflight[k] = mine
			}
			d.mu.Unlock()
			return func() {
				d.mu.Lock()
				for _, k := range keys {
					if d.inflight[k] == mine {
						delete(d.inflight, k)
					}
				}
				d.mu.Unlock()
				close(mine)
			}, nil
		}
		d.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Lookup returns, for each of keys recorded within the window, when it was
// first seen. Read-only; batched with concurrent callers. Blocks.
func (d *Dedup) Lookup(ctx context.Context, keys []string) (map[string]time.Time, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	start := time.Now()
	all, err := d.lookups.do(ctx, keys)
	mDedupWait.WithLabelValues("lookup").Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(keys))
	for _, k := range keys {
		if at, ok := all[k]; ok {
			out[k] = at
		}
	}
	return out, nil
}

func (d *Dedup) lookup(ctx context.Context, keys []string) (map[string]time.Time, error) {
	mDedupBatch.WithLabelValues("lookup").Observe(float64(len(keys)))
	rows, err := d.pool.Query(ctx, `SELECT dedup_key, first_seen_at FROM lr_seen_events
		WHERE dedup_key = ANY($1) AND first_seen_at > $2`, keys, d.now().Add(-d.window))
	if err != nil {
		return nil, fmt.Errorf("dedup lookup: %w", err)
	}
	defer rows.Close()
	out := make(map[string]time.Time)
	for rows.Next() {
		var k string
		var at time.Time
		if err := rows.Scan(&k, &at); err != nil {
			return nil, fmt.Errorf("dedup lookup: %w", err)
		}
		out[k] = at
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dedup lookup: %w", err)
	}
	return out, nil
}

// Record stores sightings: a new key is inserted with its time; a known one
// gets times_seen incremented and keeps its first_seen_at, unless that fell
// out of the window (then the sighting starts it afresh). Idempotent only in
// the sense that re-recording never loses the first sighting. Batched with
// concurrent callers. Blocks until committed.
func (d *Dedup) Record(ctx context.Context, seen []Seen) error {
	if len(seen) == 0 {
		return nil
	}
	start := time.Now()
	_, err := d.records.do(ctx, seen)
	mDedupWait.WithLabelValues("record").Observe(time.Since(start).Seconds())
	return err
}

func (d *Dedup) record(ctx context.Context, seen []Seen) (struct{}, error) {
	mDedupBatch.WithLabelValues("record").Observe(float64(len(seen)))
	// One row per key per statement (ON CONFLICT may not touch a row twice),
	// in key order so concurrent batches lock rows in the same order.
	type agg struct {
		at time.Time
		n  int32
	}
	byKey := make(map[string]agg, len(seen))
	for _, s := range seen {
		a, ok := byKey[s.Key]
		if !ok || s.At.Before(a.at) {
			a.at = s.At
		}
		a.n++
		byKey[s.Key] = a
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ats := make([]time.Time, len(keys))
	ns := make([]int32, len(keys))
	for i, k := range keys {
		ats[i], ns[i] = byKey[k].at, byKey[k].n
	}
	_, err := d.pool.Exec(ctx, `INSERT INTO lr_seen_events (dedup_key, first_seen_at, times_seen)
		SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::int4[])
		ON CONFLICT (dedup_key) DO UPDATE SET
			first_seen_at = CASE WHEN lr_seen_events.first_seen_at <= $4 THEN EXCLUDED.first_seen_at ELSE lr_seen_events.first_seen_at END,
			times_seen    = CASE WHEN lr_seen_events.first_seen_at <= $4 THEN EXCLUDED.times_seen ELSE lr_seen_events.times_seen + EXCLUDED.times_seen END`,
		keys, ats, ns, d.now().Add(-d.window))
	if err != nil {
		return struct{}{}, fmt.Errorf("dedup record: %w", err)
	}
	return struct{}{}, nil
}

// Prune deletes entries that left the window, in slices of 5,000 rows so no
// statement holds locks for long. It returns how many it deleted. Idempotent.
func (d *Dedup) Prune(ctx context.Context) (int64, error) {
	var total int64
	cutoff := d.now().Add(-d.window)
	for {
		tag, err := d.pool.Exec(ctx, `DELETE FROM lr_seen_events WHERE ctid IN (
			SELECT ctid FROM lr_seen_events WHERE first_seen_at <= $1 LIMIT 5000)`, cutoff)
		if err != nil {
			return total, fmt.Errorf("dedup prune: %w", err)
		}
		total += tag.RowsAffected()
		mDedupPruned.Add(float64(tag.RowsAffected()))
		if tag.RowsAffected() < 5000 {
			return total, nil
		}
	}
}

// Ping checks the state database answers, for readiness.
func (d *Dedup) Ping(ctx context.Context) error { return d.pool.Ping(ctx) }
