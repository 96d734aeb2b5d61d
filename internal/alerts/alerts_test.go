package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/testenv"
)

// The rule file Prometheus loads is the rendering of the default thresholds:
// the evaluator and Prometheus never disagree on a number.
func TestRuleFileMatchesDefaultThresholds(t *testing.T) {
	t.Parallel()
	want, err := RenderRules(DefaultThresholds())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(testenv.Root(), "dashboards", "alerts.rules.yml")
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s differs from RenderRules(DefaultThresholds()): regenerate it with `launchready alerts --print-rules > dashboards/alerts.rules.yml`", file)
	}
	for name := range PendingFor {
		if !strings.Contains(string(got), "alert: "+name+"\n") {
			t.Errorf("rule file has no alert %s", name)
		}
	}
}

func TestThresholdsFromEnv(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		env     map[string]string
		check   func(Thresholds) bool
		wantErr string
	}{
		{"defaults", nil, func(th Thresholds) bool {
			return th.WebhookFailureRate == 0.01 && th.WebhookFailureWindow == 15*time.Minute && th.DuplicateFactor == 3 &&
				th.DuplicateBaseline == 24*time.Hour && th.RefundGrace == 5*time.Minute && th.BacklogWindow == 15*time.Minute
		}, ""},
		{"override", map[string]string{"LR_ALERT_DUPLICATE_FACTOR": "5", "LR_ALERT_SLOT_LAG_BYTES": "1024", "LR_ALERT_SILENCE": "2h"}, func(th Thresholds) bool {
			return th.DuplicateFactor == 5 && th.SlotLagBytes == 1024 && th.Silence == 2*time.Hour
		}, ""},
		{"blank keeps the default", map[string]string{"LR_ALERT_MISMATCH_RATE": " "}, func(th Thresholds) bool { return th.MismatchRate == 0.05 }, ""},
		{"not a number", map[string]string{"LR_ALERT_MISMATCH_RATE": "five"}, nil, "LR_ALERT_MISMATCH_RATE"},
		{"not a duration", map[string]string{"LR_ALERT_INTERVAL": "60"}, nil, "LR_ALERT_INTERVAL"},
		{"rate out of range", map[string]string{"LR_ALERT_WEBHOOK_FAILURE_RATE": "2"}, nil, "LR_ALERT_WEBHOOK_FAILURE_RATE"},
		{"factor must exceed 1", map[string]string{"LR_ALERT_DUPLICATE_FACTOR": "1"}, nil, "LR_ALERT_DUPLICATE_FACTOR"},
		{"window inside baseline", map[string]string{"LR_ALERT_DUPLICATE_WINDOW": "48h"}, nil, "LR_ALERT_DUPLICATE_WINDOW"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			th, err := ThresholdsFrom(func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil || !c.check(th) {
				t.Fatalf("err = %v, thresholds %+v", err, th)
			}
		})
	}
}

// The state machine: a fire condition must hold for the rule's for:, a
// value inside the band (neither firing nor clear) changes nothing, and a
// firing alert resolves only once clear has held for keep_firing. Each
// transition comes out exactly once.
func TestMachineHysteresis(t *testing.T) {
	t.Parallel()
	type step struct {
		at            time.Duration
		firing, clear bool
		gone          bool // the series is not reported at all
		want          string
	}
	fire, band, clear := [2]bool{true, false}, [2]bool{false, false}, [2]bool{false, true}
	s := func(at time.Duration, st [2]bool, want string) step {
		return step{at: at, firing: st[0], clear: st[1], want: want}
	}
	cases := []struct {
		name       string
		pendingFor time.Duration
		keep       time.Duration
		steps      []step
	}{
		{"fires at once and resolves after keep", 0, 10 * time.Minute, []step{
			s(0, clear, ""), s(time.Minute, fire, "firing"), s(2*time.Minute, fire, ""),
			s(3*time.Minute, clear, ""), s(12*time.Minute, clear, ""), s(13*time.Minute, clear, "resolved"), s(14*time.Minute, clear, ""),
		}},
		{"band keeps it firing", 0, 5 * time.Minute, []step{
			s(0, fire, "firing"), s(time.Minute, band, ""), s(30*time.Minute, band, ""), s(31*time.Minute, fire, ""),
			s(32*time.Minute, clear, ""), s(33*time.Minute, band, ""), s(40*time.Minute, clear, ""), s(45*time.Minute, clear, "resolved"),
		}},
		{"for: needs the condition to hold", 5 * time.Minute, 0, []step{
			s(0, fire, ""), s(4*time.Minute, fire, ""), s(5*time.Minute, band, ""), s(6*time.Minute, fire, ""),
			s(10*time.Minute, fire, ""), s(11*time.Minute, fire, "firing"), s(12*time.Minute, clear, "resolved"),
		}},
		{"flapping around the threshold posts once", 0, 10 * time.Minute, []step{
			s(0, fire, "firing"), s(time.Minute, clear, ""), s(2*time.Minute, fire, ""), s(3*time.Minute, clear, ""),
			s(4*time.Minute, band, ""), s(5*time.Minute, fire, ""), s(6*time.Minute, clear, ""), s(16*time.Minute, clear, "resolved"),
		}},
		{"a series that disappears resolves", 0, time.Minute, []step{
			s(0, fire, "firing"), {at: time.Minute, gone: true}, {at: 2 * time.Minute, gone: true, want: "resolved"}, {at: 3 * time.Minute, gone: true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m := newMachine()
			r := &rule{name: "A", summary: "a", pendingFor: c.pendingFor}
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for i, st := range c.steps {
				var samples []Sample
				if !st.gone {
					samples = []Sample{{Labels: "provider=x", Firing: st.firing, Clear: st.clear}}
				}
				out := m.apply(r, samples, c.keep, t0.Add(st.at))
				got := ""
				if len(out) > 1 {
					t.Fatalf("step %d: %d transitions", i, len(out))
				}
				if len(out) == 1 {
					got = out[0].State
					if out[0].Labels != "provider=x" || out[0].Alert != "A" {
						t.Fatalf("step %d: transition %+v", i, out[0])
					}
				}
				if got != st.want {
					t.Fatalf("step %d at %s: got %q, want %q", i, st.at, got, st.want)
				}
			}
		})
	}
}

type receiver struct {
	mu    sync.Mutex
	posts []Payload
	fail  int // answer 500 to this many posts first
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	if rc.fail > 0 {
		rc.fail--
		http.Error(w, "busy", http.StatusInternalServerError)
		return
	}
	var p Payload
	if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &p) != nil || p.Text == "" {
		http.Error(w, "want Slack-compatible JSON with text", http.StatusBadRequest)
		return
	}
	rc.posts = append(rc.posts, p)
}

func (rc *receiver) got() []Payload {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Payload(nil), rc.posts...)
}

// A post the receiver refuses stays queued and goes out, in order, at the
// next flush; nothing is posted twice.
func TestNotifierRetriesInOrder(t *testing.T) {
	t.Parallel()
	rc := &receiver{fail: 1}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	n := NewNotifier(srv.URL+"/hooks/secret-path", time.Second)
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	n.Enqueue(Transition{Alert: "A", State: StateFiring, Summary: "s", At: at}, Transition{Alert: "A", State: StateResolved, Summary: "s", At: at.Add(time.Hour), Since: at})
	err := n.Flush(context.Background())
	if err == nil || n.Pending() != 2 {
		t.Fatalf("first flush: err %v, pending %d; want an error and 2 queued", err, n.Pending())
	}
	if strings.Contains(err.Error(), "secret-path") {
		t.Fatalf("error leaks the webhook URL: %v", err)
	}
	if err := n.Flush(context.Background()); err != nil || n.Pending() != 0 {
		t.Fatalf("second flush: err %v, pending %d", err, n.Pending())
	}
	if err := n.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	posts := rc.got()
	if len(posts) != 2 || posts[0].Transition.State != StateFiring || posts[1].Transition.State != StateResolved {
		t.Fatalf("posts %+v", posts)
	}
	if !strings.HasPrefix(posts[0].Text, ":rotating_light: FIRING A") || !strings.Contains(posts[1].Text, "RESOLVED A") || !strings.Contains(posts[1].Text, "lasted 1h0m0s") {
		t.Fatalf("texts %q / %q", posts[0].Text, posts[1].Text)
	}
}

// The scraper turns the pipeline's counters into increases over the window,
// across a counter reset (a restart of the pipeline).
func TestMetricsScraperIncreases(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	rejected, received := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "# TYPE launchready_ingest_received_total counter\nlaunchready_ingest_received_total{provider=\"stripe\"} %d\n", received)
		fmt.Fprintf(w, "# TYPE launchready_ingest_rejected_total counter\nlaunchready_ingest_rejected_total{provider=\"stripe\",reason=\"signature\"} %d\n", rejected)
		fmt.Fprintf(w, "launchready_ingest_rejected_total{provider=\"stripe\",reason=\"stale\"} 1\n")
	}))
	defer srv.Close()
	s := NewMetricsScraper(srv.URL)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	set := func(rej, rec int) {
		mu.Lock()
		rejected, received = rej, rec
		mu.Unlock()
	}
	steps := []struct {
		at           time.Duration
		rej, rec     int
		wantF, wantR int64
	}{
		{0, 0, 100, 0, 0},
		{5 * time.Minute, 10, 200, 10, 100},
		{10 * time.Minute, 2, 20, 13, 120}, // a reset: the new values count whole
		{25 * time.Minute, 4, 120, 2, 100}, // the 10m sample is now the window's base
	}
	for i, st := range steps {
		set(st.rej, st.rec)
		f, r, err := s.Failed(context.Background(), t0.Add(st.at), 15*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if f["stripe"] != st.wantF || r["stripe"] != st.wantR {
			t.Fatalf("step %d: failed %d received %d, want %d %d", i, f["stripe"], r["stripe"], st.wantF, st.wantR)
		}
	}
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "up 1") }))
	defer srv2.Close()
	if _, _, err := NewMetricsScraper(srv2.URL).Failed(context.Background(), t0, time.Minute); !errors.Is(err, errNoCounters) {
		t.Fatalf("metrics without ingest counters: err %v", err)
	}
}

type fakeBacklog struct {
	lags func() map[string]int64
}

func (f fakeBacklog) Backlog(context.Context) (map[string]int64, error) { return f.lags(), nil }

// The backlog rule fires only once a group's backlog has grown over a full
// window while staying above the minimum, and clears when it stops growing.
func TestBacklogGrowingRule(t *testing.T) {
	t.Parallel()
	th := DefaultThresholds() // 15m window, minimum 1000
	lag := map[string]int64{}
	e := &Evaluator{th: th, src: Sources{Backlog: fakeBacklog{func() map[string]int64 { return lag }}}, backlog: map[string][]point{}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		at                time.Duration
		audit, kit        int64
		wantAudit, wantKt string // "fire", "clear" or "band" (neither)
	}{
		{0, 2000, 100, "clear", "clear"},
		{5 * time.Minute, 2500, 200, "clear", "clear"},  // growing, but not for a full window yet
		{15 * time.Minute, 3500, 300, "fire", "clear"},  // grew over 15m, never under 1000; kit is small
		{20 * time.Minute, 4000, 400, "fire", "clear"},  //
		{36 * time.Minute, 4000, 500, "clear", "clear"}, // flat since 20m: 15m ago it was 4000 too
		{40 * time.Minute, 900, 5000, "clear", "clear"}, // kit jumped: its window is not covered above 1000
		{56 * time.Minute, 1200, 6000, "band", "fire"},  // kit grew for 16m above 1000; audit grows again from 900: inside the band
	}
	for i, st := range steps {
		lag = map[string]int64{"lr.audit": st.audit, "lr.sink.kit": st.kit}
		samples, err := e.backlogGrowing(context.Background(), t0.Add(st.at))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, s := range samples {
			v := "band"
			if s.Firing {
				v = "fire"
			} else if s.Clear {
				v = "clear"
			}
			got[s.Labels] = v
		}
		if got["group=lr.audit"] != st.wantAudit || got["group=lr.sink.kit"] != st.wantKt {
			t.Fatalf("step %d: %v, want audit %s kit %s", i, got, st.wantAudit, st.wantKt)
		}
	}
}

// The pipeline's /metrics is read over the network: any body gives the
// counters or an error, never a panic.
func FuzzParseCounters(f *testing.F) {
	f.Add("# TYPE launchready_ingest_received_total counter\nlaunchready_ingest_received_total{provider=\"stripe\"} 10\nlaunchready_ingest_rejected_total{provider=\"stripe\",reason=\"x\"} 2\n")
	f.Add("launchready_ingest_received_total{provider=\"kit\"} NaN\n")
	f.Add("garbage {{{")
	f.Fuzz(func(t *testing.T, body string) {
		s, err := parseCounters(strings.NewReader(body))
		if err == nil && (s.failed == nil || s.received == nil) {
			t.Fatal("no error and no counters")
		}
	})
}
