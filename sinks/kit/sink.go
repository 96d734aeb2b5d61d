// Package kit is the Kit (API v4) half of the sinks: it reads a
// subscriber's tags and custom fields, and upserts subscribers, tags,
// untags and writes custom fields (PUT /v4/subscribers/{id}, as Kit's
// reference documents it) — every call through internal/httpx, under one
// rate limiter per API key (Kit allows 120 requests per 60 s).
package kit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/httpx"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/schemas"
	"github.com/launchready/launchready/sinks"
)

// Kit's documented limit for an API key.
const (
	RateLimit  = 120
	RateWindow = 60 * time.Second
)

// NewLimiter returns the client-side limiter for n requests per window,
// widened by 2% (at least 250 ms): requests leave the client in order but reach
// Kit with varying latency, and Kit counts arrivals, so a limiter exactly
// at the provider's count would now and then cross it.
func NewLimiter(n int, window time.Duration) *httpx.Limiter {
	return httpx.NewLimiter(n, window+max(window/50, 250*time.Millisecond))
}

// Options configures a Sink.
type Options struct {
	BaseURL string // e.g. https://api.kit.com/v4
	APIKey  config.Secret
	// Limiter is shared by everything that uses the same API key; nil
	// means NewLimiter(RateLimit, RateWindow).
	Limiter *httpx.Limiter
	// HTTP tuning; zero values take internal/httpx's defaults.
	Timeout                    time.Duration
	MaxRetries                 int
	RetryWaitMin, RetryWaitMax time.Duration
	Log                        *slog.Logger
}

// Sink is the Kit provider of the sink workers. Safe for concurrent use.
type Sink struct {
	c   *httpx.Client
	log *slog.Logger
}

// New returns a Kit sink.
func New(o Options) *Sink {
	if o.Limiter == nil {
		o.Limiter = NewLimiter(RateLimit, RateWindow)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	key := o.APIKey
	return &Sink{
		log: o.Log.With("component", "sink.kit"),
		c: httpx.New(httpx.Options{
			Provider: schemas.ProviderKit, BaseURL: o.BaseURL, Limiter: o.Limiter,
			Auth:    func(h http.Header) { h.Set("X-Kit-Api-Key", key.Reveal()) },
			Timeout: o.Timeout, MaxRetries: o.MaxRetries, RetryWaitMin: o.RetryWaitMin, RetryWaitMax: o.RetryWaitMax, Log: o.Log,
		}),
	}
}

// FromConfig returns the Kit sink of cfg (LR_KIT_BASE_URL, LR_KIT_API_KEY,
// LR_KIT_RATE_LIMIT requests per 60 s).
func FromConfig(cfg *config.Config, log *slog.Logger) (*Sink, error) {
	if !cfg.KitAPIKey.Set() {
		return nil, errors.New("kit sink: LR_KIT_API_KEY is not set")
	}
	o := Options{BaseURL: cfg.KitBaseURL, APIKey: cfg.KitAPIKey, Log: log}
	if cfg.KitRateLimit > 0 && cfg.KitRateLimit != RateLimit {
		o.Limiter = NewLimiter(cfg.KitRateLimit, RateWindow)
	}
	return New(o), nil
}

// Name is "kit".
func (s *Sink) Name() string { return schemas.ProviderKit }

// CreateAction names the create in results.
func (s *Sink) CreateAction() string { return "upsert_subscriber" }

// Target is the Kit part of d. A subscriber is created only for a customer
// who has access: launchready never adds a prospect or a former customer to
// the list, it only re-tags and updates those already there.
func (s *Sink) Target(d mapping.Desired, e *schemas.Entitlement) sinks.Target {
	return sinks.Target{Tags: d.KitTags, ManagedTags: d.ManagedKit, Fields: d.KitFields, Create: e.Access, CreateFields: true}
}

func merge(o *sinks.Outcome, r *httpx.Response) {
	if r != nil {
		o.HTTPStatus = r.Status
		o.Attempts += r.Attempts
	}
}

func isStatus(err error, status int) bool {
	var se *httpx.StatusError
	return errors.As(err, &se) && se.Status == status
}

// Read finds the subscriber by email (any state: an unsubscribed person is
// still the same subscriber), falling back to a known subscriber id, and
// reads its tags. Two requests for a known subscriber.
func (s *Sink) Read(ctx context.Context, e *schemas.Entitlement, t sinks.Target) (sinks.State, sinks.Outcome, error) {
	var o sinks.Outcome
	q := url.Values{"email_address": {strings.TrimSpace(e.Email)}, "status": {"all"}}
	r, err := s.c.Do(ctx, http.MethodGet, "/subscribers?"+q.Encode(), nil, nil)
	merge(&o, r)
	if err != nil {
		return sinks.State{}, o, err
	}
	subs, err := parseSubscriberList(r.Body)
	if err != nil {
		return sinks.State{}, o, err
	}
	var sub *subscriber
	if len(subs) > 0 {
		sub = &subs[0]
	} else if len(e.KitSubscriberIDs) == 1 {
		r, err := s.c.Do(ctx, http.MethodGet, "/subscribers/"+url.PathEscape(e.KitSubscriberIDs[0]), nil, nil)
		merge(&o, r)
		switch {
		case isStatus(err, http.StatusNotFound):
		case err != nil:
			return sinks.State{}, o, err
		default:
			one, err := parseSubscriber(r.Body)
			if err != nil {
				return sinks.State{}, o, err
			}
			sub = &one
		}
	}
	if sub == nil {
		return sinks.State{}, o, nil
	}
	tags, err := s.tags(ctx, sub.ID, &o)
	if err != nil {
		return sinks.State{}, o, err
	}
	return state(*sub, tags), o, nil
}

func state(sub subscriber, tags map[int64]string) sinks.State {
	st := sinks.State{Found: true, ID: itoa(sub.ID), Email: sub.Email, Tags: map[int64]bool{}, Groups: map[int64]bool{}, Fields: sub.Fields}
	for id := range tags {
		st.Tags[id] = true
	}
	return st
}

// tags reads every page of a subscriber's tags.
func (s *Sink) tags(ctx context.Context, id int64, o *sinks.Outcome) (map[int64]string, error) {
	all := map[int64]string{}
	after := ""
	for {
		q := url.Values{"per_page": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		r, err := s.c.Do(ctx, http.MethodGet, "/subscribers/"+itoa(id)+"/tags?"+q.Encode(), nil, nil)
		merge(o, r)
		if err != nil {
			return nil, err
		}
		page, next, err := parseTagPage(r.Body)
		if err != nil {
			return nil, err
		}
		for k, v := range page {
			all[k] = v
		}
		if next == "" || next == after {
			return all, nil
		}
		after = next
	}
}

// Apply performs one action. The create is Kit's upsert by email: when the
// subscriber turns out to exist already (200), its tags are read so the
// next diff starts from the truth.
func (s *Sink) Apply(ctx context.Context, e *schemas.Entitlement, st *sinks.State, a sinks.Action) (sinks.Outcome, error) {
	var o sinks.Outcome
	switch a.Kind {
	case sinks.ActCreate:
		body := map[string]any{"email_address": strings.TrimSpace(e.Email)}
		if len(a.Fields) > 0 {
			body["fields"] = a.Fields
		}
		r, err := s.c.Do(ctx, http.MethodPost, "/subscribers", body, nil)
		merge(&o, r)
		if err != nil {
			return o, err
		}
		sub, err := parseSubscriber(r.Body)
		if err != nil {
			return o, err
		}
		tags := map[int64]string{}
		if r.Status != http.StatusCreated {
			o.Note = "subscriber existed"
			if tags, err = s.tags(ctx, sub.ID, &o); err != nil {
				return o, err
			}
		}
		*st = state(sub, tags)
		o.Refreshed = true
		return o, nil
	case sinks.ActTag:
		r, err := s.c.Do(ctx, http.MethodPost, "/tags/"+itoa(a.Ref.ID)+"/subscribers/"+url.PathEscape(st.ID), map[string]any{}, nil)
		merge(&o, r)
		if err == nil && r.Status == http.StatusOK {
			o.Note = "already tagged"
		}
		return o, err
	case sinks.ActUntag:
		r, err := s.c.Do(ctx, http.MethodDelete, "/tags/"+itoa(a.Ref.ID)+"/subscribers/"+url.PathEscape(st.ID), nil, nil)
		merge(&o, r)
		return o, err
	case sinks.ActSetFields:
		// Kit's update is a PUT that requires the email address: send the
		// one Kit holds, so a field write never changes the address.
		email := st.Email
		if email == "" {
			email = strings.TrimSpace(e.Email)
		}
		r, err := s.c.Do(ctx, http.MethodPut, "/subscribers/"+url.PathEscape(st.ID), map[string]any{"email_address": email, "fields": a.Fields}, nil)
		merge(&o, r)
		return o, err
	}
	return o, fmt.Errorf("kit sink: action %q is not supported", a.Kind)
}

// Check verifies that every Kit tag and custom field the mapping names
// exists in the account (Kit silently ignores unknown custom fields, so a
// missing one would be written on every sync, forever).
func (s *Sink) Check(ctx context.Context, m *mapping.Mapping) error {
	have := map[int64]string{}
	var o sinks.Outcome
	for after := ""; ; {
		q := url.Values{"per_page": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		r, err := s.c.Do(ctx, http.MethodGet, "/tags?"+q.Encode(), nil, nil)
		merge(&o, r)
		if err != nil {
			return fmt.Errorf("kit: list tags: %w", err)
		}
		page, next, err := parseTagPage(r.Body)
		if err != nil {
			return err
		}
		for k, v := range page {
			have[k] = v
		}
		if next == "" || next == after {
			break
		}
		after = next
	}
	fields := map[string]bool{}
	for after := ""; ; {
		q := url.Values{"per_page": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		r, err := s.c.Do(ctx, http.MethodGet, "/custom_fields?"+q.Encode(), nil, nil)
		merge(&o, r)
		if err != nil {
			return fmt.Errorf("kit: list custom fields: %w", err)
		}
		keys, next, err := parseFieldPage(r.Body)
		if err != nil {
			return err
		}
		for _, k := range keys {
			fields[k] = true
		}
		if next == "" || next == after {
			break
		}
		after = next
	}
	var missing []string
	d := m.Desired(&schemas.Entitlement{}, time.Time{})
	for _, t := range d.ManagedKit {
		name, ok := have[t.ID]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("tag %d (%s)", t.ID, t.Name))
		case !strings.EqualFold(name, t.Name):
			s.log.WarnContext(ctx, "kit tag name differs from the mapping", "tag_id", t.ID, "kit", name, "mapping", t.Name)
		}
	}
	for _, k := range []string{m.Kit.Fields.Plan, m.Kit.Fields.Status, m.Kit.Fields.Renewal, m.Kit.Fields.Synced} {
		if k != "" && !fields[k] {
			missing = append(missing, fmt.Sprintf("custom field %q", k))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("kit: %w: %s (create them in Kit or fix LR_MAPPING_FILE)", sinks.ErrMissing, strings.Join(missing, ", "))
	}
	return nil
}
