package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/httpx"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/schemas"
)

// StripeEventRetention is how far back GET /v1/events reaches.
const StripeEventRetention = 30 * 24 * time.Hour

// BackfillOptions configures a Stripe backfill.
type BackfillOptions struct {
	// Since: events created at or after it are replayed.
	Since time.Time
	// Types, when set, filters by event type (types[], at most 20).
	Types []string
	// PageSize is the list limit (default and maximum 100).
	PageSize int
	// Progress, when set, is called after every page and once at the end.
	Progress func(BackfillProgress)
	// Limiter paces requests (default 20 a second, under Stripe's test-mode
	// read limit).
	Limiter *httpx.Limiter
}

// BackfillProgress is where a backfill stands.
type BackfillProgress struct {
	Pages, Events, New, Duplicates, Invalid int
	// Oldest is the creation time of the oldest event read so far: the list
	// runs newest first, down to Since.
	Oldest, Since time.Time
	Done          bool
}

// Fraction estimates how much of the time range is done (0–1).
func (p BackfillProgress) Fraction(now time.Time) float64 {
	if p.Done {
		return 1
	}
	total := now.Sub(p.Since)
	if p.Oldest.IsZero() || total <= 0 {
		return 0
	}
	f := float64(now.Sub(p.Oldest)) / float64(total)
	return min(max(f, 0), 1)
}

// Backfill replays Stripe events from GET /v1/events (created[gte]=Since,
// limit=100, paged with starting_after) through the same path as webhooks:
// the same dedup keys (stripe:evt_…), so events already received are stored
// again flagged duplicate, and those the outage lost are stored as originals.
// It keeps no cursor: a backfill interrupted is simply run again.
type Backfill struct {
	log    *slog.Logger
	client *httpx.Client
	store  *store
	opt    BackfillOptions
	now    func() time.Time
}

// NewBackfill returns a Stripe backfill using cfg's API key and base URL.
func NewBackfill(cfg *config.Config, log *slog.Logger, producer *kafka.Producer, dedup *Dedup, o BackfillOptions) (*Backfill, error) {
	if !cfg.StripeAPIKey.Set() {
		return nil, errors.New("stripe backfill: LR_STRIPE_API_KEY is not set")
	}
	if producer == nil || dedup == nil {
		return nil, errors.New("stripe backfill: a producer and a dedup window are required")
	}
	if o.Since.IsZero() {
		return nil, errors.New("stripe backfill: Since is required")
	}
	if len(o.Types) > 20 {
		return nil, errors.New("stripe backfill: at most 20 event types")
	}
	if o.PageSize <= 0 || o.PageSize > 100 {
		o.PageSize = 100
	}
	if o.Limiter == nil {
		o.Limiter = httpx.NewLimiter(20, time.Second)
	}
	if log == nil {
		log = slog.Default()
	}
	log = obs.Component(log, "ingest.stripe_backfill")
	key := cfg.StripeAPIKey.Reveal()
	return &Backfill{
		log: log,
		client: httpx.New(httpx.Options{
			Provider: schemas.ProviderStripe, BaseURL: cfg.StripeBaseURL, Limiter: o.Limiter, Log: log,
			Auth: func(h http.Header) { h.Set("Authorization", "Bearer "+key) },
		}),
		store: newStore(producer, dedup, cfg.Topic, log, 30*time.Second),
		opt:   o,
		now:   time.Now,
	}, nil
}

// Name implements app.Stage.
func (b *Backfill) Name() string { return "ingest.stripe_backfill" }

type eventList struct {
	Data    []json.RawMessage `json:"data"`
	HasMore bool              `json:"has_more"`
}

// Run pages through the events until the list ends, storing each page
// before asking for the next. It returns the first error (a page not stored:
// run it again — what was stored comes back flagged duplicate). Blocks.
func (b *Backfill) Run(ctx context.Context) error {
	prog := BackfillProgress{Since: b.opt.Since}
	after, prevAfter := "", ""
	for {
		q := url.Values{}
		q.Set("limit", strconv.Itoa(b.opt.PageSize))
		q.Set("created[gte]", strconv.FormatInt(b.opt.Since.Unix(), 10))
		for _, t := range b.opt.Types {
			q.Add("types[]", t)
		}
		if after != "" {
			q.Set("starting_after", after)
		}
		var list eventList
		resp, err := b.client.Do(ctx, http.MethodGet, "/v1/events?"+q.Encode(), nil, &list)
		if err != nil {
			return fmt.Errorf("stripe backfill page %d: %w", prog.Pages+1, err)
		}
		prog.Pages++
		received := b.now().UTC()
		evs := make([]schemas.RawEvent, 0, len(list.Data))
		for _, raw := range list.Data {
			// The cursor is the last listed id, readable or not, so an
			// unreadable event cannot make the backfill read a page again.
			var idOnly struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(raw, &idOnly) == nil && validToken(idOnly.ID) {
				after = idOnly.ID
			}
			ev, err := parseStripeEvent(raw)
			if err != nil {
				prog.Invalid++
				mBackfillEvents.WithLabelValues(schemas.ProviderStripe, "invalid").Inc()
				b.log.WarnContext(ctx, "Stripe event skipped: unreadable", "reason", err.Error())
				continue
			}
			ev.ReceivedAt, ev.Source, ev.Verification = received, schemas.SourceBackfill, schemas.VerifiedAPI
			ev.RequestID = resp.Header.Get("Request-Id")
			evs = append(evs, ev)
			if prog.Oldest.IsZero() || ev.ProviderTime.Before(prog.Oldest) {
				prog.Oldest = ev.ProviderTime
			}
		}
		dups, err := b.store.put(ctx, evs)
		if err != nil {
			return fmt.Errorf("stripe backfill page %d: %w", prog.Pages, err)
		}
		prog.Events += len(evs)
		prog.Duplicates += dups
		prog.New += len(evs) - dups
		mBackfillEvents.WithLabelValues(schemas.ProviderStripe, "new").Add(float64(len(evs) - dups))
		mBackfillEvents.WithLabelValues(schemas.ProviderStripe, "duplicate").Add(float64(dups))
		if !list.HasMore || len(list.Data) == 0 {
			break
		}
		if after == "" || after == prevAfter {
			return fmt.Errorf("stripe backfill page %d: no event id to continue after", prog.Pages)
		}
		prevAfter = after
		if b.opt.Progress != nil {
			b.opt.Progress(prog)
		}
	}
	prog.Done = true
	if b.opt.Progress != nil {
		b.opt.Progress(prog)
	}
	b.log.InfoContext(ctx, "stripe backfill done", "pages", prog.Pages, "events", prog.Events, "new", prog.New, "duplicates", prog.Duplicates, "invalid", prog.Invalid)
	return nil
}
