package ops

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/alerts/audittest"
	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/testenv"
)

// BenchmarkOverviewPage measures the overview page (every audit panel's
// query plus rendering) over a day of 100k provider events, 20k entitlement
// states and 5k sink actions: five page loads per iteration, p50 and max.
func BenchmarkOverviewPage(b *testing.B) {
	cfg, _ := testenv.Migrated(b)
	ctx := context.Background()
	conn, err := chdb.Open(ctx, cfg, "")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	db := cfg.ClickHouseDatabase
	now := time.Now().UTC()
	var raws []audittest.Raw
	for i := 0; i < 100_000; i++ {
		p := []string{"stripe", "kit", "circle"}[i%3]
		raws = append(raws, audittest.Raw{At: now.Add(-time.Duration(i) * 864 * time.Millisecond), Provider: p, EventID: fmt.Sprintf("e%d", i), Type: "x", CustomerKey: fmt.Sprintf("k%d", i%5000), Duplicate: i%40 == 0})
	}
	audittest.Raws(b, conn, db, raws...)
	var ents []audittest.Entitlement
	for i := 0; i < 20_000; i++ {
		ents = append(ents, audittest.Entitlement{At: now.Add(-time.Duration(i) * 4 * time.Second), Customer: fmt.Sprintf("c%d", i%5000), Version: int64(i), Status: "active", Access: true, LatencyMS: int64(50 + i%900), IngestedMS: 1})
	}
	audittest.Entitlements(b, conn, db, ents...)
	var sinks []audittest.Sink
	for i := 0; i < 5_000; i++ {
		sinks = append(sinks, audittest.Sink{At: now.Add(-time.Duration(i) * 17 * time.Second), Customer: fmt.Sprintf("c%d", i), ActionID: fmt.Sprintf("a%d", i), Provider: []string{"kit", "circle"}[i%2], Action: "tag", Status: []string{"ok", "ok", "noop", "error"}[i%4]})
	}
	audittest.Sinks(b, conn, db, sinks...)
	cfg.OpsToken = "bench-token"
	mux := http.NewServeMux()
	if err := Register(mux, cfg, conn, testenv.Logger(b), Options{NoGauges: true}); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	b.ResetTimer()
	var times []time.Duration
	for i := 0; i < b.N; i++ {
		for j := 0; j < 5; j++ {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ops/?range=24h", nil)
			req.Header.Set("Authorization", "Bearer bench-token")
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
			times = append(times, time.Since(start))
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max_ms")
}
