package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/httpx"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/schemas"
)

// PollerOptions tunes a Poller; zero values take the defaults.
type PollerOptions struct {
	// PerPage members per list request (default 100).
	PerPage int
	// Interval between scans (default cfg.CirclePollInterval); stretched when
	// the monthly quota requires it.
	Interval time.Duration
	// Limiter and Budget are shared with the Circle sink when both run in
	// one process: Circle counts requests per IP (2,000 / 5 min) and per
	// month (cfg.CircleMonthlyQuota). Defaults: 1,800 per 5 minutes, and a
	// budget of the configured quota.
	Limiter *httpx.Limiter
	Budget  *httpx.Budget
	// QuotaShare is the part of the monthly quota the poller plans to spend
	// (default 0.5); the rest is left to the sinks.
	QuotaShare float64
	// CursorName is the poller's row in lr_cursors (default circle.members).
	CursorName string
}

// Poller pulls Circle community members from the Admin API v2 and emits a
// synthetic member.updated raw event for every member whose state changed.
//
// The list endpoint (GET /community_members?per_page=&page=) cannot filter
// or sort by updated_at, so each scan reads every page (status=all, to see
// deactivations too). What decides "changed" is the member's state key,
// sha256(id | updated_at | canonical JSON of the tracked fields), which is
// also the event id: a member whose key is already in the dedup window is
// unchanged and not emitted; any other is written through the same path as
// webhooks (store), so a crash after the Kafka write re-emits at most the
// page in progress, as an unflagged copy downstream recognises by event id.
// Keys catch tag and profile-field changes that do not move updated_at,
// and members an offset page skipped while the list shifted are emitted on
// the next scan.
//
// The cursor in lr_cursors (JSON: next page of the scan in progress,
// high-water updated_at, size of the last full scan) is advanced after each
// page, only once Kafka acknowledged that page's records: a restart resumes
// the scan where it stopped instead of spending quota on pages already done.
// The requests used this month are saved with it, so a restart does not
// reset the monthly budget.
type Poller struct {
	log      *slog.Logger
	client   *httpx.Client
	budget   *httpx.Budget
	store    *store
	dedup    *Dedup
	pool     *pgxpool.Pool
	perPage  int
	interval time.Duration
	quota    int
	share    float64
	cursor   string
	now      func() time.Time
	restored bool
}

// NewPoller returns a Circle member poller writing through dedup (share the
// receiver's, see Receiver.Dedup) with its cursor in statePool.
func NewPoller(env *app.Env, producer *kafka.Producer, statePool *pgxpool.Pool, dedup *Dedup, o PollerOptions) (*Poller, error) {
	cfg := env.Cfg
	if !cfg.CircleAPIToken.Set() {
		return nil, errors.New("circle poller: LR_CIRCLE_API_TOKEN is not set")
	}
	if producer == nil || statePool == nil || dedup == nil {
		return nil, errors.New("circle poller: a producer, a state database pool and a dedup window are required")
	}
	log := obs.Component(env.Log, "ingest.circle_poller")
	if o.PerPage <= 0 {
		o.PerPage = 100
	}
	if o.Interval <= 0 {
		o.Interval = cfg.CirclePollInterval
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.Limiter == nil {
		o.Limiter = httpx.NewLimiter(1800, 5*time.Minute)
	}
	if o.Budget == nil {
		o.Budget = httpx.NewBudget(cfg.CircleMonthlyQuota, log, httpx.BudgetMetric(schemas.ProviderCircle))
	}
	if o.QuotaShare <= 0 || o.QuotaShare > 1 {
		o.QuotaShare = 0.5
	}
	if o.CursorName == "" {
		o.CursorName = "circle.members"
	}
	auth := cfg.CircleAuthScheme + " " + cfg.CircleAPIToken.Reveal()
	p := &Poller{
		log: log,
		client: httpx.New(httpx.Options{
			Provider: schemas.ProviderCircle, BaseURL: cfg.CircleBaseURL, Limiter: o.Limiter, Budget: o.Budget, Log: log,
			Auth: func(h http.Header) { h.Set("Authorization", auth) },
		}),
		budget:   o.Budget,
		store:    newStore(producer, dedup, cfg.Topic, log, 30*time.Second),
		dedup:    dedup,
		pool:     statePool,
		perPage:  o.PerPage,
		interval: o.Interval,
		quota:    cfg.CircleMonthlyQuota,
		share:    o.QuotaShare,
		cursor:   o.CursorName,
		now:      time.Now,
	}
	return p, nil
}

// Name implements app.Stage.
func (p *Poller) Name() string { return "ingest.circle_poller" }

// Run scans, then waits the interval (stretched to keep within the monthly
// quota, or until next month once it is used up), until ctx ends. A failed
// scan is logged and retried after the interval. Blocks.
func (p *Poller) Run(ctx context.Context) error {
	for {
		wait := p.interval
		res, err := p.Poll(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, httpx.ErrBudgetExhausted):
			mPollScans.WithLabelValues("budget").Inc()
			now := p.now().UTC()
			wait = time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC).Sub(now)
			p.log.WarnContext(ctx, "Circle monthly quota used up: polling resumes next month", "quota", p.quota, "wait", wait.Round(time.Minute).String())
		case err != nil:
			mPollScans.WithLabelValues("error").Inc()
			p.log.WarnContext(ctx, "Circle scan failed; retrying after the interval", "err", err, "pages_done", res.Pages)
		default:
			mPollScans.WithLabelValues("ok").Inc()
			p.log.InfoContext(ctx, "Circle scan done", "pages", res.Pages, "members", res.Members, "changed", res.Changed)
		}
		if pace := p.pace(res.ScanPages); pace > wait && !errors.Is(err, httpx.ErrBudgetExhausted) {
			wait = pace
		}
		mPollInterval.Set(wait.Seconds())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// pace is the least interval at which scans of pages requests each spend no
// more than the poller's share of the monthly quota.
func (p *Poller) pace(pages int) time.Duration {
	if p.quota <= 0 || pages <= 0 {
		return 0
	}
	perMonth := float64(p.quota) * p.share
	return time.Duration(float64(30*24*time.Hour) * float64(pages) / perMonth)
}

// ScanResult summarises one Poll.
type ScanResult struct {
	Pages      int // pages read by this call
	Members    int // members read
	Changed    int // members emitted
	Duplicates int // emitted members the window flagged (a race with another poller)
	ScanPages  int // pages of the last complete scan (for pacing)
	Complete   bool
}

type memberPage struct {
	Page        int               `json:"page"`
	HasNextPage bool              `json:"has_next_page"`
	PageCount   int               `json:"page_count"`
	Records     []json.RawMessage `json:"records"`
}

// pollCursor is the poller's durable position, stored as JSON in lr_cursors.
type pollCursor struct {
	Page        int       `json:"page"` // next page of the scan in progress; 0: none
	ScanStarted time.Time `json:"scan_started,omitzero"`
	HighWater   time.Time `json:"high_water,omitzero"`
	LastScan    time.Time `json:"last_complete_scan,omitzero"`
	ScanPages   int       `json:"scan_pages,omitempty"`
}

// Poll runs one scan (or finishes the one in progress): it reads every page,
// emits changed members, and advances the cursor after each page's records
// are acknowledged. It returns the first error; the cursor then still points
// at the page that failed. Blocks.
func (p *Poller) Poll(ctx context.Context) (res ScanResult, err error) {
	if !p.restored {
		if err := p.restoreBudget(ctx); err != nil {
			p.log.WarnContext(ctx, "could not restore this month's Circle request count", "err", err)
		} else {
			p.restored = true
		}
	}
	defer func() {
		if err != nil {
			// Requests of a failed page count against the quota too.
			p.saveBudget(context.WithoutCancel(ctx))
		}
	}()
	cur, err := p.loadCursor(ctx)
	if err != nil {
		return res, err
	}
	res.ScanPages = cur.ScanPages
	page := cur.Page
	if page < 1 {
		page = 1
		cur.ScanStarted = p.now().UTC()
	}
	for ; page < 1_000_000; page++ {
		var mp memberPage
		path := fmt.Sprintf("/community_members?per_page=%d&page=%d&status=all", p.perPage, page)
		if _, err := p.client.Do(ctx, http.MethodGet, path, nil, &mp); err != nil {
			return res, fmt.Errorf("circle poll page %d: %w", page, err)
		}
		mPollPages.Inc()
		res.Pages++
		changed, hw, err := p.changedMembers(ctx, mp.Records)
		if err != nil {
			return res, fmt.Errorf("circle poll page %d: %w", page, err)
		}
		res.Members += len(mp.Records)
		if len(changed) > 0 {
			dups, err := p.store.put(ctx, changed)
			if err != nil {
				return res, fmt.Errorf("circle poll page %d: %w", page, err)
			}
			res.Changed += len(changed)
			res.Duplicates += dups
		}
		if hw.After(cur.HighWater) {
			cur.HighWater = hw
			mPollHighWater.Set(float64(hw.Unix()))
		}
		last := !mp.HasNextPage || len(mp.Records) == 0 || (mp.PageCount > 0 && page >= mp.PageCount)
		cur.Page = page + 1
		if last {
			cur.Page, cur.LastScan, cur.ScanPages = 0, p.now().UTC(), page
			res.ScanPages, res.Complete = page, true
		}
		if err := p.saveCursor(ctx, cur); err != nil {
			return res, err
		}
		if last {
			return res, nil
		}
	}
	return res, errors.New("circle poll: the member list does not end")
}

// changedMembers turns a page of members into raw events for those whose
// state key is not in the dedup window, and returns the page's newest
// updated_at. A member the API returns malformed is logged and skipped.
func (p *Poller) changedMembers(ctx context.Context, records []json.RawMessage) ([]schemas.RawEvent, time.Time, error) {
	var hw time.Time
	evs := make([]schemas.RawEvent, 0, len(records))
	keys := make([]string, 0, len(records))
	now := p.now().UTC()
	for _, raw := range records {
		id, updated, key, err := memberState(raw)
		if err != nil {
			p.log.WarnContext(ctx, "Circle member skipped: unreadable", "reason", err.Error())
			continue
		}
		if updated.After(hw) {
			hw = updated
		}
		ev := schemas.RawEvent{
			Provider: schemas.ProviderCircle, EventID: key, Type: "member.updated", ObjectID: id,
			ProviderTime: updated, ReceivedAt: now, Source: schemas.SourcePoll, Verification: schemas.VerifiedAPI,
			Body: raw,
		}
		evs = append(evs, ev)
		keys = append(keys, ev.DedupKey())
	}
	seen, err := p.dedup.Lookup(ctx, keys)
	if err != nil {
		return nil, hw, err
	}
	changed := evs[:0]
	for _, ev := range evs {
		if _, ok := seen[ev.DedupKey()]; ok {
			mPollMembers.WithLabelValues("unchanged").Inc()
			continue
		}
		mPollMembers.WithLabelValues("changed").Inc()
		changed = append(changed, ev)
	}
	return changed, hw, nil
}

func (p *Poller) loadCursor(ctx context.Context) (pollCursor, error) {
	var c pollCursor
	var raw string
	err := p.pool.QueryRow(ctx, `SELECT value FROM lr_cursors WHERE name = $1`, p.cursor).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("circle poll: read cursor: %w", err)
	}
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return pollCursor{}, fmt.Errorf("circle poll: cursor %s is not valid: %w", p.cursor, err)
	}
	return c, nil
}

// saveCursor stores the cursor and this month's request count in one
// statement.
func (p *Poller) saveCursor(ctx context.Context, c pollCursor) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	month := p.now().UTC().Format("2006-01")
	used := month + " " + strconv.Itoa(p.budget.Used())
	_, err = p.pool.Exec(ctx, `INSERT INTO lr_cursors (name, value, updated_at) VALUES ($1, $2, now()), ($3, $4, now())
		ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
		p.cursor, string(b), p.budgetName(), used)
	if err != nil {
		return fmt.Errorf("circle poll: save cursor: %w", err)
	}
	return nil
}

// saveBudget stores this month's request count alone (best effort).
func (p *Poller) saveBudget(ctx context.Context) {
	used := p.now().UTC().Format("2006-01") + " " + strconv.Itoa(p.budget.Used())
	_, err := p.pool.Exec(ctx, `INSERT INTO lr_cursors (name, value, updated_at) VALUES ($1, $2, now())
		ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`, p.budgetName(), used)
	if err != nil {
		p.log.WarnContext(ctx, "could not save this month's Circle request count", "err", err)
	}
}

func (p *Poller) budgetName() string { return p.cursor + ".requests_this_month" }

// restoreBudget loads this month's request count saved by a previous run.
func (p *Poller) restoreBudget(ctx context.Context) error {
	var raw string
	err := p.pool.QueryRow(ctx, `SELECT value FROM lr_cursors WHERE name = $1`, p.budgetName()).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	month, n, ok := strings.Cut(raw, " ")
	used, convErr := strconv.Atoi(n)
	if !ok || convErr != nil {
		return fmt.Errorf("saved request count %q is not valid", raw)
	}
	if month == p.now().UTC().Format("2006-01") && used > p.budget.Used() {
		p.budget.Restore(used)
	}
	return nil
}
