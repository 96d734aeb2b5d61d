package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/httpx"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/testenv"
	"github.com/launchready/launchready/schemas"
)

// circleAPI is a minimal Circle Admin API v2 member list: the documented
// response shape ({page, per_page, has_next_page, count, page_count,
// records}), Bearer auth, and a log of the pages asked for.
type circleAPI struct {
	mu      sync.Mutex
	members []map[string]any
	pages   []int
	token   string
}

// testMember is a community member; run makes its state unique to one test
// run (the dedup window in the state database outlives runs).
func testMember(run string, id int, updated string, tags ...int) map[string]any {
	var mt []map[string]any
	for _, t := range tags {
		mt = append(mt, map[string]any{"id": t, "name": fmt.Sprintf("tag-%d", t)})
	}
	return map[string]any{
		"id": id, "user_id": id + 90000, "community_id": 4242, "public_uid": fmt.Sprintf("u%05d", id),
		"email": fmt.Sprintf("member%d.%s@example.org", id, run), "name": fmt.Sprintf("Member %d", id),
		"first_name": "Member", "last_name": strconv.Itoa(id), "headline": "", "active": true,
		"accepted_invitation": "2026-03-02 10:20:00 UTC", "sso_provider_user_id": nil,
		"created_at": "2026-03-02T10:20:00.000Z", "updated_at": updated, "last_seen_at": "2026-03-05T18:00:00.000Z",
		"member_tags": mt, "flattened_profile_fields": map[string]any{}, "posts_count": 0, "comments_count": 0,
		"gamification_stats": map[string]any{"community_member_id": id, "total_points": 0},
	}
}

func (c *circleAPI) set(i int, field string, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members[i][field] = v
}

func (c *circleAPI) requested() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.pages...)
}

func (c *circleAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+c.token {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"success":false,"message":"Your account could not be authenticated."}`))
		return
	}
	if r.URL.Path != "/community_members" || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	per, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if page < 1 {
		page = 1
	}
	if per < 1 {
		per = 10
	}
	c.mu.Lock()
	c.pages = append(c.pages, page)
	n := len(c.members)
	lo, hi := min((page-1)*per, n), min(page*per, n)
	recs := c.members[lo:hi]
	body, _ := json.Marshal(map[string]any{
		"page": page, "per_page": per, "has_next_page": hi < n, "count": n, "page_count": (n + per - 1) / per, "records": recs,
	})
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func TestCirclePollerEmitsChangesAndAdvancesCursorOnlyAfterKafka(t *testing.T) {
	t.Parallel()
	cfg, pool := testenv.Migrated(t)
	run := testenv.ID()
	api := &circleAPI{token: "circle-token-" + run}
	for i := 1; i <= 5; i++ {
		api.members = append(api.members, testMember(run, 31330+i, fmt.Sprintf("2026-03-0%dT10:21:00.000Z", i), 77))
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	cfg.CircleBaseURL = srv.URL
	cfg.CircleAPIToken = config.Secret(api.token)
	cursor := "circle.members.test." + testenv.ID()
	env := &app.Env{Cfg: cfg, Log: discardLog()}
	producer := kafka.NewProducer(cfg.KafkaBrokers, kafka.WriterOptions{})
	defer producer.Close()
	dedup := NewDedup(pool, cfg.DedupWindow, discardLog())
	newPoller := func(p *kafka.Producer) *Poller {
		poller, err := NewPoller(env, p, pool, dedup, PollerOptions{PerPage: 2, CursorName: cursor})
		if err != nil {
			t.Fatal(err)
		}
		return poller
	}
	ctx := context.Background()
	p := newPoller(producer)

	res, err := p.Poll(ctx)
	if err != nil || !res.Complete || res.Pages != 3 || res.Changed != 5 {
		t.Fatalf("first scan: %+v %v", res, err)
	}
	recs := readRaw(t, cfg, "circle")
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5", len(recs))
	}
	for _, r := range recs {
		if r.Type != "member.updated" || r.Source != schemas.SourcePoll || r.Verification != schemas.VerifiedAPI || r.key != r.ObjectID || len(r.EventID) != 64 || r.Duplicate {
			t.Fatalf("record: %+v key %q", r.RawEvent, r.key)
		}
	}
	c, err := p.loadCursor(ctx)
	if err != nil || c.Page != 0 || c.ScanPages != 3 || !c.HighWater.Equal(time.Date(2026, 3, 5, 10, 21, 0, 0, time.UTC)) {
		t.Fatalf("cursor after scan: %+v %v", c, err)
	}

	// Nothing changed: nothing emitted.
	if res, err := p.Poll(ctx); err != nil || res.Changed != 0 || res.Members != 5 {
		t.Fatalf("idle scan: %+v %v", res, err)
	}
	// A tag change that does not move updated_at, and an updated_at change.
	api.set(2, "member_tags", []map[string]any{{"id": 77, "name": "tag-77"}, {"id": 78, "name": "tag-78"}})
	api.set(4, "updated_at", "2026-03-09T08:00:00.000Z")
	if res, err := p.Poll(ctx); err != nil || res.Changed != 2 {
		t.Fatalf("scan after two changes: %+v %v", res, err)
	}
	if n := topicCount(t, cfg, "circle"); n != 7 {
		t.Fatalf("%d records, want 7", n)
	}

	// Kafka refuses page 2's change: the cursor stays on page 2 and the
	// change is not lost — the next poller resumes there and emits it.
	api.set(3, "active", false)
	dead := kafka.NewProducer([]string{"127.0.0.1:1"}, kafka.WriterOptions{MaxAttempts: 1})
	defer dead.Close()
	if _, err := newPoller(dead).Poll(ctx); err == nil {
		t.Fatal("a scan whose records Kafka refused must fail")
	}
	if c, _ := p.loadCursor(ctx); c.Page != 2 {
		t.Fatalf("cursor page %d after the failure, want 2 (page 1 done, page 2 not acknowledged)", c.Page)
	}
	if n := topicCount(t, cfg, "circle"); n != 7 {
		t.Fatalf("%d records after the refused write, want 7", n)
	}
	mid := len(api.requested())
	res, err = newPoller(producer).Poll(ctx)
	if err != nil || res.Changed != 1 || res.Pages != 2 {
		t.Fatalf("resumed scan: %+v %v", res, err)
	}
	if got := api.requested()[mid:]; got[0] != 2 {
		t.Fatalf("resumed scan asked for pages %v, want to start at 2", got)
	}
	if n := topicCount(t, cfg, "circle"); n != 8 {
		t.Fatalf("%d records, want 8", n)
	}
	// The month's request count is kept with the cursor.
	var used string
	if err := pool.QueryRow(ctx, `SELECT value FROM lr_cursors WHERE name = $1`, cursor+".requests_this_month").Scan(&used); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s %d", time.Now().UTC().Format("2006-01"), len(api.requested())); used != want {
		t.Fatalf("saved request count %q, want %q (every request, across restarts)", used, want)
	}
}

func TestCirclePollerPacesScansToTheMonthlyQuota(t *testing.T) {
	t.Parallel()
	p := &Poller{quota: 5000, share: 0.5}
	if got := p.pace(10); got != 30*24*time.Hour*10/2500 {
		t.Fatalf("pace(10) = %s", got)
	}
	if (&Poller{quota: 0, share: 0.5}).pace(10) != 0 {
		t.Fatal("no quota, no pacing")
	}
}

func TestCirclePollerNeedsAToken(t *testing.T) {
	t.Parallel()
	cfg := unitConfig(t, nil)
	if _, err := NewPoller(&app.Env{Cfg: cfg, Log: discardLog()}, nil, nil, nil, PollerOptions{}); err == nil || !strings.Contains(err.Error(), "LR_CIRCLE_API_TOKEN") {
		t.Fatalf("err = %v", err)
	}
}

func TestCirclePollerStopsAtTheMonthlyQuota(t *testing.T) {
	t.Parallel()
	cfg, pool := testenv.Migrated(t)
	run := testenv.ID()
	api := &circleAPI{token: "circle-token-" + run}
	for i := 1; i <= 5; i++ {
		api.members = append(api.members, testMember(run, 41330+i, "2026-03-02T10:21:00.000Z"))
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	cfg.CircleBaseURL = srv.URL
	cfg.CircleAPIToken = config.Secret(api.token)
	cfg.CircleMonthlyQuota = 2
	producer := kafka.NewProducer(cfg.KafkaBrokers, kafka.WriterOptions{})
	defer producer.Close()
	p, err := NewPoller(&app.Env{Cfg: cfg, Log: discardLog()}, producer, pool, NewDedup(pool, cfg.DedupWindow, discardLog()),
		PollerOptions{PerPage: 2, CursorName: "circle.members.test." + run})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Poll(context.Background())
	if !errors.Is(err, httpx.ErrBudgetExhausted) || res.Pages != 2 || res.Changed != 4 {
		t.Fatalf("scan over a quota of 2 requests: %+v, %v", res, err)
	}
	if got := len(api.requested()); got != 2 {
		t.Fatalf("%d requests reached Circle, want 2", got)
	}
	if c, _ := p.loadCursor(context.Background()); c.Page != 3 {
		t.Fatalf("cursor page %d, want 3 (two pages acknowledged)", c.Page)
	}
	if p.pace(3) != 30*24*time.Hour*3 {
		t.Fatalf("pace(3) over a 2-request quota = %s", p.pace(3))
	}
}
