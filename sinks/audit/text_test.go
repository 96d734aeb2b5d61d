package audit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWriteTimeline(t *testing.T) {
	t.Parallel()
	r := &TimelineResult{Query: "a@b.c", CustomerIDs: []string{"c_1"}, Keys: []string{"a@b.c", "c_1"}, Entries: []Entry{
		{At: t0, Kind: EntryEvent, Source: "stripe", What: "checkout.session.completed", ID: "evt_1", Status: "received"},
		{At: t0.Add(time.Second), Kind: EntryEvent, Source: "stripe", What: "checkout.session.completed", ID: "evt_1", Status: "duplicate", Duplicate: true, Detail: "tab\there"},
	}}
	var b strings.Builder
	if err := WriteTimeline(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"canonical id c_1", "event [DUP]", "2026-03-02 10:15:00.123", "tab here", "keys: a@b.c, c_1"} {
		if !strings.Contains(out, want) {
			t.Errorf("timeline output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "\n") != 6 {
		t.Errorf("want a header, a blank line, a column header and 2 rows:\n%s", out)
	}
	b.Reset()
	_ = WriteTimeline(&b, &TimelineResult{Query: "x@y.z"})
	if !strings.Contains(b.String(), "no identity record links it") || !strings.Contains(b.String(), "(nothing recorded)") {
		t.Errorf("empty timeline:\n%s", b.String())
	}
	if err := WriteTimeline(failWriter{}, r); err == nil {
		t.Error("a write error was lost")
	}
}

func TestWriteStats(t *testing.T) {
	t.Parallel()
	p50, p95 := 1500.0, 2000.0
	s := &StatsResult{Since: t0, Until: t0.Add(24 * time.Hour),
		Providers: []ProviderStats{{Provider: "stripe", Received: 6, Duplicates: 1, DuplicateRate: 1.0 / 6, Webhooks: 6, Rejected: 2,
			RejectedByReason: map[string]int64{"stale_timestamp": 1, "signature_mismatch": 1}, WebhookFailureRate: 0.25}},
		Mismatches: MismatchStats{Open: 1, Customers: 4, Rate: 0.25, OpenByKind: map[string]int64{"paid_no_circle_access": 1}},
		Latency:    LatencyStats{Count: 3, P50MS: &p50, P95MS: &p95},
		Sinks:      []SinkStats{{Provider: "circle", Succeeded: 2, Failed: 1, ByStatus: map[string]int64{"ok": 2, "error": 1}}},
	}
	var b strings.Builder
	if err := WriteStats(&b, s); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"16.7%", "25.0%", "1 open / 4 customers", "p50 1.50s, p95 2.00s (3 states)", "error=1 ok=2", "(24h0m0s)",
		"rejected stripe: signature_mismatch=1 stale_timestamp=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "n/a") {
		t.Errorf("latency known, yet n/a shown:\n%s", out)
	}
	s.Providers[0].Rejected, s.Providers[0].RejectedByReason, s.Latency = 0, nil, LatencyStats{}
	b.Reset()
	_ = WriteStats(&b, s)
	if strings.Contains(b.String(), "rejected stripe") || !strings.Contains(b.String(), "latency: n/a") {
		t.Errorf("no rejections and no latency:\n%s", b.String())
	}
}

func TestWhyText(t *testing.T) {
	t.Parallel()
	end := t0.Add(30 * 24 * time.Hour)
	tests := []struct {
		name string
		a    Answer
		want []string
	}{
		{"access", Answer{Query: "a@b.c", CustomerID: "c_1", Access: true,
			Entitlement: &EntitlementState{Version: 3, At: t0, Status: "active", Plan: "pro", Access: true, PeriodEnd: end},
			Decision:    &Entry{At: t0, Status: "entitlement", What: "invoice.paid: paid invoice keeps access"},
			CausingIDs:  []string{"evt_1", "evt_gone"},
			Causes:      []Entry{{Kind: EntryEvent, Source: "stripe", What: "invoice.paid", ID: "evt_1", At: t0}},
			Sinks:       []Entry{{Source: "circle", What: "add_access_group pro", Status: "ok"}}},
			[]string{"a@b.c (customer c_1) HAS access now", "entitlement v3", "plan pro", "paid through 2026-04-01", `rule "invoice.paid: paid invoice keeps access"`,
				"stripe invoice.paid evt_1 received", "evt_gone (not in the audit trail)", "No mismatch is open", "Sync of v3: circle add_access_group pro ok"}},
		{"flagged, mismatched, unsynced", Answer{Query: "a@b.c", CustomerID: "c_1",
			Entitlement:    &EntitlementState{Version: 4, At: t0, Status: "disputed", Flagged: true, FlagReason: "charge disputed"},
			OpenMismatches: []Entry{{What: "paid_tagged_lead", Source: "kit", At: t0}}},
			[]string{"has NO access now", "flagged for review: charge disputed", "No decision is recorded", "Open mismatches: paid_tagged_lead in kit", "No sink action is recorded for entitlement v4"}},
		{"merged away", Answer{Query: "c_old", CustomerID: "c_old", Entitlement: &EntitlementState{Version: 2, Deleted: true, Access: true}},
			[]string{"has NO access under this id: it was merged"}},
		{"nothing published", Answer{Query: "a@b.c", CustomerID: "c_1", Recent: []Entry{{Kind: EntryEvent, Source: "kit", What: "subscriber.created", ID: "e1", At: t0}}},
			[]string{"no entitlement was ever published", "holds 1 recent records under it (event)", "kit subscriber.created e1"}},
		{"unknown", Answer{Query: "x@y.z"}, []string{"No customer is linked to x@y.z", "holds nothing under it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := whyText(&tt.a)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("lacks %q:\n%s", w, got)
				}
			}
			if strings.Contains(got, "\n") {
				t.Errorf("not one paragraph:\n%s", got)
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
