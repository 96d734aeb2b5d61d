package alerts

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/alerts/audittest"
	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/testenv"
)

// BenchmarkEvaluatorTick measures one evaluation of every ClickHouse rule
// over a day of audit trail: 100k provider events (2% duplicates), 2k
// customers with entitlements, 4k mismatch transitions, 300 refunds.
func BenchmarkEvaluatorTick(b *testing.B) {
	cfg, _ := testenv.Migrated(b)
	ctx := context.Background()
	conn, err := chdb.Open(ctx, cfg, "")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	db := cfg.ClickHouseDatabase
	now := time.Now().UTC()
	const events, customers = 100_000, 2_000
	raws := make([]audittest.Raw, 0, events)
	for i := 0; i < events; i++ {
		p := []string{"stripe", "kit", "circle"}[i%3]
		r := audittest.Raw{At: now.Add(-time.Duration(i) * 864 * time.Millisecond), Provider: p, EventID: fmt.Sprintf("e%d", i), Type: "x", CustomerKey: fmt.Sprintf("cus_%d", i%customers), Duplicate: i%50 == 0}
		if i%333 == 0 {
			r.Provider, r.Type, r.Payload = "stripe", "charge.refunded", `{"data":{"object":{"refunded":true}}}`
		}
		raws = append(raws, r)
	}
	audittest.Raws(b, conn, db, raws...)
	var ids []audittest.Identity
	var ents []audittest.Entitlement
	for c := 0; c < customers; c++ {
		id := fmt.Sprintf("c%d", c)
		ids = append(ids, audittest.Identity{At: now.Add(-48 * time.Hour), Key: id, Kind: "customer", Customer: id},
			audittest.Identity{At: now.Add(-48 * time.Hour), Key: fmt.Sprintf("cus_%d", c), Kind: "stripe", Customer: id})
		ents = append(ents, audittest.Entitlement{At: now.Add(-30 * time.Hour), Customer: id, Version: 1, Status: "active", Access: c%2 == 0, LastEvent: now.Add(-30 * time.Hour)})
	}
	audittest.Identities(b, conn, db, ids...)
	audittest.Entitlements(b, conn, db, ents...)
	var ms []audittest.Mismatch
	for i := 0; i < 4_000; i++ {
		st := []string{"open", "closed"}[i%2]
		ms = append(ms, audittest.Mismatch{At: now.Add(-time.Duration(4000-i) * 20 * time.Second), Customer: fmt.Sprintf("c%d", (i/2)%customers), Kind: "circle_access_not_paid", System: "circle", State: st})
	}
	audittest.Mismatches(b, conn, db, ms...)
	e, err := New(DefaultThresholds(), Sources{CH: conn, DB: db, TopicPrefix: cfg.TopicPrefix}, nil, testenv.Logger(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := e.Tick(ctx, now); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "tick_ms")
	b.ReportMetric(events, "events")
}
