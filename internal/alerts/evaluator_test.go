package alerts

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/alerts/audittest"
	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/testenv"
)

const refundBody = `{"id":"evt_r1","type":"charge.refunded","data":{"object":{"id":"ch_1","object":"charge","customer":"cus_r","amount":4900,"amount_refunded":4900,"refunded":true},"previous_attributes":{"amount_refunded":0,"refunded":false}}}`

const partialRefundBody = `{"id":"evt_p1","type":"charge.refunded","data":{"object":{"id":"ch_2","object":"charge","customer":"cus_p","amount":4900,"amount_refunded":900,"refunded":false},"previous_attributes":{"amount_refunded":0}}}`

// Scripted data in the real ClickHouse: a normal day, then a duplicate
// spike (stripe), a failure burst (kit deliveries dead-lettered) and a
// refund whose access was never revoked. The evaluator, stepped through
// simulated time, fires each alert once, keeps quiet while they hold,
// resolves each once after the data recovers, and the local receiver gets
// exactly one post per transition.
func TestEvaluatorFiresAndResolvesOncePerTransition(t *testing.T) {
	t.Parallel()
	cfg, _ := testenv.Migrated(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := chdb.Open(ctx, cfg, cfg.ClickHouseDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	db := cfg.ClickHouseDatabase
	T0 := time.Now().UTC().Truncate(time.Minute).Add(-2 * time.Hour)
	T1 := T0.Add(30 * time.Minute)

	// A normal day: 200 stripe events (2 duplicates), 100 kit events.
	var raws []audittest.Raw
	for i := 0; i < 200; i++ {
		raws = append(raws, audittest.Raw{At: T0.Add(-time.Duration(i*7) * time.Minute), Provider: "stripe", EventID: fmt.Sprintf("evt_%d", i), Type: "invoice.paid", CustomerKey: "cus_n", Duplicate: i%100 == 1})
	}
	for i := 0; i < 100; i++ {
		raws = append(raws, audittest.Raw{At: T0.Add(-time.Duration(i*13) * time.Minute), Provider: "kit", EventID: fmt.Sprintf("k%d", i), Type: "subscriber.created", CustomerKey: "4"})
	}
	audittest.Raws(t, conn, db, raws...)
	audittest.Customer(t, conn, db, T0.Add(-48*time.Hour), "cr", "stripe=cus_r")
	audittest.Customer(t, conn, db, T0.Add(-48*time.Hour), "cp", "stripe=cus_p")
	audittest.Entitlements(t, conn, db,
		audittest.Entitlement{At: T0.Add(-47 * time.Hour), Customer: "cr", Version: 1, Status: "active", Access: true, LastEvent: T0.Add(-47 * time.Hour)},
		audittest.Entitlement{At: T0.Add(-47 * time.Hour), Customer: "cp", Version: 1, Status: "active", Access: true, LastEvent: T0.Add(-47 * time.Hour)},
	)

	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	th := DefaultThresholds()
	src := Sources{CH: conn, DB: db, TopicPrefix: cfg.TopicPrefix}
	e, err := New(th, src, NewNotifier(srv.URL, 5*time.Second), testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	tick := func(at time.Time) []string {
		t.Helper()
		out, err := e.Tick(ctx, at)
		if err != nil {
			t.Fatalf("tick at %s: %v", at.Sub(T1), err)
		}
		var got []string
		for _, tr := range out {
			got = append(got, tr.State+" "+tr.Alert+" "+tr.Labels)
		}
		sort.Strings(got)
		return got
	}
	expect := func(at time.Time, want ...string) {
		t.Helper()
		got := tick(at)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("at T1%+v: transitions\n%s\nwant\n%s\nstatuses: %+v", at.Sub(T1), strings.Join(got, "\n"), strings.Join(want, "\n"), e.Statuses())
		}
	}

	expect(T0) // a normal day: nothing fires

	// The incidents, all in [T1-12m, T1-7m).
	var spike []audittest.Raw
	for i := 0; i < 60; i++ {
		spike = append(spike, audittest.Raw{At: T1.Add(-12*time.Minute + time.Duration(i)*5*time.Second), Provider: "stripe", EventID: fmt.Sprintf("evt_s%d", i%30), Type: "invoice.paid", CustomerKey: "cus_n", Duplicate: i >= 30})
	}
	for i := 0; i < 50; i++ {
		spike = append(spike, audittest.Raw{At: T1.Add(-12*time.Minute + time.Duration(i)*5*time.Second), Provider: "kit", EventID: fmt.Sprintf("kb%d", i), Type: "subscriber.created", CustomerKey: "4"})
	}
	spike = append(spike,
		audittest.Raw{At: T1.Add(-10 * time.Minute), Provider: "stripe", EventID: "evt_r1", Type: "charge.refunded", CustomerKey: "cus_r", Payload: refundBody},
		audittest.Raw{At: T1.Add(-10 * time.Minute), Provider: "stripe", EventID: "evt_p1", Type: "charge.refunded", CustomerKey: "cus_p", Payload: partialRefundBody},
	)
	audittest.Raws(t, conn, db, spike...)
	var dead []audittest.DeadLetter
	for i := 0; i < 5; i++ {
		dead = append(dead, audittest.DeadLetter{At: T1.Add(-8 * time.Minute), Stage: "reconcile", SourceTopic: cfg.Topic("raw.kit"), Reason: "unknown subscriber", Key: fmt.Sprintf("kb%d", i)})
	}
	dead = append(dead, audittest.DeadLetter{At: T1.Add(-8 * time.Minute), Stage: "sink.kit", SourceTopic: cfg.Topic("entitlements"), Reason: "422", Key: "cp"})
	audittest.DeadLetters(t, conn, db, dead...)
	audittest.DeadLetters(t, conn, db, dead...) // re-inserted: counted once
	// Circle pushes refused by ingest: none stored, so every delivery failed.
	refused := audittest.Rejection{At: T1.Add(-9 * time.Minute), RecordID: "ingest-a-1", Provider: "circle", Reason: "secret_mismatch", Status: 401, Count: 4}
	audittest.Rejections(t, conn, db, refused, refused) // re-sent: counted once

	expect(T1.Add(-6*time.Minute), // the refund is 4 minutes old: within the grace period
		"firing LaunchreadyDuplicateSpike provider=stripe",
		"firing LaunchreadyWebhookFailureRate provider=circle",
		"firing LaunchreadyWebhookFailureRate provider=kit")
	expect(T1, "firing LaunchreadyRefundAccessGranted ")
	expect(T1.Add(time.Minute)) // all three hold: nothing new is posted

	// The refund is revoked (only for the full refund; the partial one never
	// fired), and the spike and burst leave the window.
	audittest.Entitlements(t, conn, db, audittest.Entitlement{At: T1.Add(2 * time.Minute), Customer: "cr", Version: 2, Status: "refunded", LastEvent: T1.Add(-10 * time.Minute)})
	expect(T1.Add(3 * time.Minute))  // clear starts; keep_firing holds them
	expect(T1.Add(8 * time.Minute))  // the spike and burst are out of the 15m window now
	expect(T1.Add(12 * time.Minute)) // still inside keep_firing (10m)
	expect(T1.Add(13*time.Minute), "resolved LaunchreadyRefundAccessGranted ")
	expect(T1.Add(18*time.Minute),
		"resolved LaunchreadyDuplicateSpike provider=stripe",
		"resolved LaunchreadyWebhookFailureRate provider=circle",
		"resolved LaunchreadyWebhookFailureRate provider=kit")
	expect(T1.Add(19 * time.Minute))
	if s := e.Statuses(); len(s) != 0 {
		t.Fatalf("statuses after recovery: %+v", s)
	}

	posts := rc.got()
	var got []string
	for _, p := range posts {
		got = append(got, p.Transition.State+" "+p.Transition.Alert)
		if !strings.Contains(p.Text, p.Transition.Alert) {
			t.Errorf("post text %q does not name its alert", p.Text)
		}
	}
	want := []string{
		"firing LaunchreadyDuplicateSpike", "firing LaunchreadyWebhookFailureRate", "firing LaunchreadyWebhookFailureRate", "firing LaunchreadyRefundAccessGranted",
		"resolved LaunchreadyRefundAccessGranted", "resolved LaunchreadyDuplicateSpike", "resolved LaunchreadyWebhookFailureRate", "resolved LaunchreadyWebhookFailureRate",
	}
	if len(got) != len(want) {
		t.Fatalf("receiver got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	sort.Strings(got[:3])
	sort.Strings(got[5:])
	sort.Strings(want[:3])
	sort.Strings(want[5:])
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("receiver got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, p := range posts {
		if p.Transition.Alert == AlertRefundAccess && p.Transition.State == StateFiring && !strings.Contains(p.Text, "cr (cus_r") {
			t.Errorf("refund post does not name the customer: %q", p.Text)
		}
		if p.Transition.Alert == AlertWebhookFailures && p.Transition.State == StateFiring &&
			!strings.Contains(p.Text, "5 of 50 kit deliveries failed") && !strings.Contains(p.Text, "4 of 4 circle deliveries failed") {
			t.Errorf("failure post: %q", p.Text)
		}
	}
}
