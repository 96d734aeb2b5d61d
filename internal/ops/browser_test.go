package ops

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/alerts/audittest"
	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/testenv"
)

const chromium = "/usr/bin/chromium"

// browse runs headless Chromium on url: --dump-dom when shot is "", else a
// 1280×900 screenshot into shot. It returns what Chromium printed.
func browse(t *testing.T, url, shot string) string {
	t.Helper()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir()}
	if shot == "" {
		args = append(args, "--dump-dom")
	} else {
		args = append(args, "--screenshot="+shot, "--window-size=1280,900")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, append(args, url)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", url, err, errOut.String())
	}
	return out.String()
}

// The ops page in a real browser: with the token (a ?token= login, which
// redirects and sets the cookie) Chromium renders the headline numbers, the
// SVG charts and a customer's audit timeline from seeded ClickHouse data,
// and the screenshot shows colourful charts; without it the page is refused.
func TestOpsPageInHeadlessChromium(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(chromium); err != nil {
		if testing.Short() {
			t.Skip("chromium not installed (scripts/tools.sh installs it); skipped with -short")
		}
		t.Fatal("chromium not found at /usr/bin/chromium: run scripts/tools.sh")
	}
	cfg, _ := testenv.Migrated(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := chdb.Open(ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	db := cfg.ClickHouseDatabase
	now := time.Now().UTC()

	// A day of traffic from three providers, with duplicates.
	var raws []audittest.Raw
	for i := 0; i < 120; i++ {
		p := []string{"stripe", "kit", "circle"}[i%3]
		raws = append(raws, audittest.Raw{At: now.Add(-time.Duration(i*11) * time.Minute), Provider: p, EventID: fmt.Sprintf("%s-%d", p, i/7), Type: "x.updated",
			CustomerKey: "k" + fmt.Sprint(i%9), Duplicate: i%7 == 6})
	}
	// Maria's story: checkout, her identity, the decision, the entitlement, a
	// mismatch and the sink's fix.
	raws = append(raws, audittest.Raw{At: now.Add(-3 * time.Hour), Provider: "stripe", EventID: "evt_maria_1", Type: "checkout.session.completed", CustomerKey: "cus_maria", Emails: []string{"maria.lopez@example.org"}})
	audittest.Raws(t, conn, db, raws...)
	audittest.Customer(t, conn, db, now.Add(-3*time.Hour), "c-maria", "email=maria.lopez@example.org", "stripe=cus_maria")
	audittest.Customer(t, conn, db, now.Add(-30*time.Hour), "c-other")
	audittest.Decisions(t, conn, db, audittest.Decision{At: now.Add(-3*time.Hour + time.Second), Customer: "c-maria", ID: "d1", Kind: "entitlement", Rule: "checkout.session.completed: paid checkout grants access", Causing: []string{"evt_maria_1"}})
	var ents []audittest.Entitlement
	for i := 0; i < 30; i++ {
		ents = append(ents, audittest.Entitlement{At: now.Add(-time.Duration(i*47) * time.Minute), Customer: fmt.Sprintf("c%d", i), Version: 1, Status: "active", Access: true, LatencyMS: int64(80 + i*13), IngestedMS: 1})
	}
	ents = append(ents, audittest.Entitlement{At: now.Add(-3*time.Hour + 2*time.Second), Customer: "c-maria", Version: 1, Status: "active", Plan: "pro", Access: true, LatencyMS: 140, IngestedMS: 1})
	audittest.Entitlements(t, conn, db, ents...)
	audittest.Mismatches(t, conn, db,
		audittest.Mismatch{At: now.Add(-2 * time.Hour), Customer: "c-maria", Kind: "paid_no_circle_access", System: "circle", State: "open", Detail: "paid, not in the Members group"},
		audittest.Mismatch{At: now.Add(-90 * time.Minute), Customer: "c-maria", Kind: "paid_no_circle_access", System: "circle", State: "closed"},
		audittest.Mismatch{At: now.Add(-5 * time.Hour), Customer: "c-other", Kind: "paid_tagged_lead", System: "kit", State: "open", Detail: "still tagged lead"},
	)
	var sinks []audittest.Sink
	for i := 0; i < 24; i++ {
		st := []string{"ok", "ok", "noop", "error"}[i%4]
		sinks = append(sinks, audittest.Sink{At: now.Add(-time.Duration(i*53) * time.Minute), Customer: fmt.Sprintf("c%d", i), ActionID: fmt.Sprintf("a%d", i), Provider: []string{"kit", "circle"}[i%2], Action: "tag", Status: st})
	}
	sinks = append(sinks, audittest.Sink{At: now.Add(-100 * time.Minute), Customer: "c-maria", ActionID: "am", Provider: "circle", Action: "add_access_group", Target: "Members", Status: "ok", HTTPStatus: 200})
	audittest.Sinks(t, conn, db, sinks...)

	cfg.OpsToken = "browser-test-token-42"
	mux := http.NewServeMux()
	if err := Register(mux, cfg, conn, testenv.Logger(t), Options{NoGauges: true}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tok := "token=" + url.QueryEscape(cfg.OpsToken.Reveal())

	// With the token: the overview's numbers and charts.
	dom := browse(t, srv.URL+"/ops/?range=24h&"+tok, "")
	for _, want := range []string{`id="headline"`, "Events received", "Duplicate rate", "Open mismatches", "Webhook volume per provider", "Ingest to entitlement latency", "Open mismatches by kind"} {
		if !strings.Contains(dom, want) {
			t.Errorf("overview DOM lacks %q", want)
		}
	}
	if n := strings.Count(dom, `<svg class="chart`); n < 8 {
		t.Errorf("%d SVG charts in the overview, want at least 8", n)
	}
	if n := strings.Count(dom, `class="series"`); n < 8 {
		t.Errorf("%d chart lines in the overview, want at least 8", n)
	}
	if strings.Contains(dom, `class="err"`) {
		t.Errorf("a panel failed:\n%s", regexp.MustCompile(`<div class="err">[^<]*`).FindAllString(dom, -1))
	}
	if !regexp.MustCompile(`Events received</div><div class="v">121</div>`).MatchString(dom) {
		t.Errorf("headline 'Events received' is not 121 (120 + Maria's checkout)")
	}

	// The customer search shows Maria's audit timeline, found by email.
	dom = browse(t, srv.URL+"/ops/customers?q=maria.lopez%40example.org&"+tok, "")
	rows := regexp.MustCompile(`<tr class="timeline-row kind-(\w+)">`).FindAllStringSubmatch(dom, -1)
	kinds := map[string]int{}
	for _, r := range rows {
		kinds[r[1]]++
	}
	for _, k := range []string{"event", "identity", "decision", "entitlement", "mismatch", "sink"} {
		if kinds[k] == 0 {
			t.Errorf("timeline has no %s row (rows by kind: %v)", k, kinds)
		}
	}
	for _, want := range []string{"checkout.session.completed", "paid checkout grants access", "add_access_group Members", "c-maria"} {
		if !strings.Contains(dom, want) {
			t.Errorf("timeline DOM lacks %q", want)
		}
	}

	// The open mismatches list.
	dom = browse(t, srv.URL+"/ops/mismatches?"+tok, "")
	if n := strings.Count(dom, `class="mismatch-row"`); n != 1 || !strings.Contains(dom, "still tagged lead") {
		t.Errorf("%d open mismatch rows, want only c-other's", n)
	}

	// The screenshot: the charts are drawn in many colours.
	shot := filepath.Join(t.TempDir(), "ops.png")
	browse(t, srv.URL+"/ops/?"+tok, shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	bnd := img.Bounds()
	if bnd.Dx() != 1280 || bnd.Dy() != 900 {
		t.Fatalf("screenshot is %v, want 1280×900", bnd)
	}
	colours := map[uint32]bool{}
	palette := 0
	for y := bnd.Min.Y + 250; y < bnd.Max.Y; y++ { // below the headline numbers: the charts
		for x := bnd.Min.X; x < bnd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[(r>>8)<<16|(g>>8)<<8|b>>8] = true
			if near(r>>8, g>>8, b>>8, 0x2f, 0x6f, 0xde) || near(r>>8, g>>8, b>>8, 0xe0, 0x53, 0x3d) {
				palette++
			}
		}
	}
	if len(colours) < 60 || palette < 200 {
		t.Errorf("chart area has %d distinct colours and %d pixels of the series colours; want ≥ 60 and ≥ 200", len(colours), palette)
	}

	// Without the token: refused, nothing rendered.
	dom = browse(t, srv.URL+"/ops/", "")
	if !strings.Contains(dom, "401 unauthorized") || strings.Contains(dom, "<svg") || strings.Contains(dom, "Events received") {
		t.Errorf("anonymous browser was not refused:\n%.400s", dom)
	}
	resp, err := http.Get(srv.URL + "/ops/customers?q=maria.lopez%40example.org")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous timeline: status %d, want 401", resp.StatusCode)
	}
}

func near(r, g, b, wr, wg, wb uint32) bool {
	d := func(a, b uint32) uint32 {
		if a > b {
			return a - b
		}
		return b - a
	}
	return d(r, wr) < 12 && d(g, wg) < 12 && d(b, wb) < 12
}
