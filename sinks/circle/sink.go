// Package circle is the Circle (Admin API v2) half of the sinks: it reads a
// member's tags, profile fields and access groups, and creates members,
// tags, untags, adds to and removes from access groups and writes profile
// fields — every call through internal/httpx under Circle's rate limit
// (2,000 requests per 5 minutes) and the plan's monthly request budget,
// which is the real constraint: a sync reads at most two things and writes
// only differences.
package circle

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

// Circle's documented limit per client IP.
const (
	RateLimit  = 2000
	RateWindow = 5 * time.Minute
)

// NewLimiter returns the client-side limiter for n requests per window,
// widened by 2% (at least 250 ms) so arrival jitter never crosses Circle's own count.
func NewLimiter(n int, window time.Duration) *httpx.Limiter {
	return httpx.NewLimiter(n, window+max(window/50, 250*time.Millisecond))
}

// Options configures a Sink.
type Options struct {
	BaseURL string // e.g. https://app.circle.so/api/admin/v2
	Token   config.Secret
	// Scheme of the Authorization header: Bearer (default) or Token.
	Scheme string
	// Limiter and Budget are shared by everything that uses the same
	// token (the Circle poller too); nil means Circle's rate limit and no
	// monthly budget.
	Limiter *httpx.Limiter
	Budget  *httpx.Budget
	// StampField is the profile field written with every profile write
	// (the mapping's "last synced at"); it never causes a write itself.
	StampField string
	// SkipInvitation creates members without Circle's invitation email.
	SkipInvitation             bool
	Timeout                    time.Duration
	MaxRetries                 int
	RetryWaitMin, RetryWaitMax time.Duration
	Log                        *slog.Logger
}

// Sink is the Circle provider of the sink workers. Safe for concurrent use.
type Sink struct {
	c     *httpx.Client
	opt   Options
	log   *slog.Logger
	stamp string
}

// New returns a Circle sink.
func New(o Options) *Sink {
	if o.Limiter == nil {
		o.Limiter = NewLimiter(RateLimit, RateWindow)
	}
	if o.Scheme == "" {
		o.Scheme = "Bearer"
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	tok, scheme := o.Token, o.Scheme
	return &Sink{
		opt: o, stamp: o.StampField, log: o.Log.With("component", "sink.circle"),
		c: httpx.New(httpx.Options{
			Provider: schemas.ProviderCircle, BaseURL: o.BaseURL, Limiter: o.Limiter, Budget: o.Budget,
			Auth:    func(h http.Header) { h.Set("Authorization", scheme+" "+tok.Reveal()) },
			Timeout: o.Timeout, MaxRetries: o.MaxRetries, RetryWaitMin: o.RetryWaitMin, RetryWaitMax: o.RetryWaitMax, Log: o.Log,
		}),
	}
}

// FromConfig returns the Circle sink of cfg (LR_CIRCLE_BASE_URL,
// LR_CIRCLE_API_TOKEN, LR_CIRCLE_AUTH_SCHEME, LR_CIRCLE_MONTHLY_QUOTA) with
// the given limiter and budget (nil: new ones for this sink alone).
func FromConfig(cfg *config.Config, m *mapping.Mapping, log *slog.Logger, lim *httpx.Limiter, budget *httpx.Budget) (*Sink, error) {
	if !cfg.CircleAPIToken.Set() {
		return nil, errors.New("circle sink: LR_CIRCLE_API_TOKEN is not set")
	}
	if budget == nil {
		budget = httpx.NewBudget(cfg.CircleMonthlyQuota, log, httpx.BudgetMetric(schemas.ProviderCircle))
	}
	return New(Options{
		BaseURL: cfg.CircleBaseURL, Token: cfg.CircleAPIToken, Scheme: cfg.CircleAuthScheme,
		Limiter: lim, Budget: budget, StampField: m.Circle.ProfileFields.Synced, Log: log,
	}), nil
}

// Name is "circle".
func (s *Sink) Name() string { return schemas.ProviderCircle }

// CreateAction names the create in results.
func (s *Sink) CreateAction() string { return "create_member" }

// Target is the Circle part of d. A member is created (and invited) only
// for a customer who has access; without access there is nothing to grant.
func (s *Sink) Target(d mapping.Desired, e *schemas.Entitlement) sinks.Target {
	return sinks.Target{
		Tags: d.CircleTags, ManagedTags: d.ManagedCircle, Groups: d.CircleGroups, ManagedGroups: d.ManagedCircleGroups,
		Fields: d.CircleFields, Stamp: s.stamp, Create: e.Access, CreateTags: true, CreateFields: true,
	}
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

// Read searches the member by email (tags and profile fields come with it)
// and, when the mapping manages access groups, lists the member's groups.
func (s *Sink) Read(ctx context.Context, e *schemas.Entitlement, t sinks.Target) (sinks.State, sinks.Outcome, error) {
	var o sinks.Outcome
	m, found, err := s.search(ctx, e.Email, &o)
	if err != nil || !found {
		return sinks.State{}, o, err
	}
	st := state(m)
	if len(t.ManagedGroups) > 0 {
		if st.Groups, err = s.groups(ctx, m.ID, &o); err != nil {
			return sinks.State{}, o, err
		}
	}
	return st, o, nil
}

func (s *Sink) search(ctx context.Context, email string, o *sinks.Outcome) (member, bool, error) {
	q := url.Values{"email": {strings.TrimSpace(email)}}
	r, err := s.c.Do(ctx, http.MethodGet, "/community_members/search?"+q.Encode(), nil, nil)
	merge(o, r)
	if isStatus(err, http.StatusNotFound) {
		return member{}, false, nil
	}
	if err != nil {
		return member{}, false, err
	}
	m, err := parseMember(r.Body)
	return m, err == nil, err
}

func state(m member) sinks.State {
	return sinks.State{Found: true, ID: itoa(m.ID), Email: m.Email, Tags: m.Tags, Groups: map[int64]bool{}, Fields: m.Fields}
}

// groups lists every page of a member's access groups.
func (s *Sink) groups(ctx context.Context, id int64, o *sinks.Outcome) (map[int64]bool, error) {
	out := map[int64]bool{}
	for page := 1; ; page++ {
		q := url.Values{"page": {itoa(int64(page))}, "per_page": {"100"}}
		r, err := s.c.Do(ctx, http.MethodGet, "/community_members/"+itoa(id)+"/access_groups?"+q.Encode(), nil, nil)
		merge(o, r)
		if err != nil {
			return nil, err
		}
		recs, more, err := parseIDPage(r.Body)
		if err != nil {
			return nil, err
		}
		for gid := range recs {
			out[gid] = true
		}
		if !more || len(recs) == 0 {
			return out, nil
		}
	}
}

// Apply performs one action. A removal answered 404 means the tag or group
// is already gone (someone else, or a retried request, removed it): done.
// A create answered 422 is checked by searching the member: a create whose
// answer was lost and then retried finds the member it made.
func (s *Sink) Apply(ctx context.Context, e *schemas.Entitlement, st *sinks.State, a sinks.Action) (sinks.Outcome, error) {
	var o sinks.Outcome
	email := strings.TrimSpace(e.Email)
	switch a.Kind {
	case sinks.ActCreate:
		return s.create(ctx, email, st, a)
	case sinks.ActTag:
		r, err := s.c.Do(ctx, http.MethodPost, "/tagged_members", map[string]any{"member_tag_id": a.Ref.ID, "user_email": email}, nil)
		merge(&o, r)
		return o, err
	case sinks.ActUntag:
		q := url.Values{"user_email": {email}, "member_tag_id": {itoa(a.Ref.ID)}}
		r, err := s.c.Do(ctx, http.MethodDelete, "/tagged_members?"+q.Encode(), nil, nil)
		merge(&o, r)
		return o, absentOK(&o, err)
	case sinks.ActAddGroup:
		r, err := s.c.Do(ctx, http.MethodPost, "/access_groups/"+itoa(a.Ref.ID)+"/community_members", map[string]any{"email": email}, nil)
		merge(&o, r)
		return o, err
	case sinks.ActRemoveGroup:
		q := url.Values{"email": {email}}
		r, err := s.c.Do(ctx, http.MethodDelete, "/access_groups/"+itoa(a.Ref.ID)+"/community_members?"+q.Encode(), nil, nil)
		merge(&o, r)
		return o, absentOK(&o, err)
	case sinks.ActSetFields:
		r, err := s.c.Do(ctx, http.MethodPut, "/community_members/"+url.PathEscape(st.ID), map[string]any{"community_member_profile_fields": a.Fields}, nil)
		merge(&o, r)
		return o, err
	}
	return o, fmt.Errorf("circle sink: action %q is not supported", a.Kind)
}

func absentOK(o *sinks.Outcome, err error) error {
	if isStatus(err, http.StatusNotFound) {
		o.Note = "already absent"
		return nil
	}
	return err
}

func (s *Sink) create(ctx context.Context, email string, st *sinks.State, a sinks.Action) (sinks.Outcome, error) {
	var o sinks.Outcome
	body := map[string]any{"email": email, "skip_invitation": s.opt.SkipInvitation}
	if len(a.Tags) > 0 {
		ids := make([]int64, len(a.Tags))
		for i, t := range a.Tags {
			ids[i] = t.ID
		}
		body["member_tag_ids"] = ids
	}
	if len(a.Fields) > 0 {
		body["community_member_profile_fields"] = a.Fields
	}
	r, err := s.c.Do(ctx, http.MethodPost, "/community_members", body, nil)
	merge(&o, r)
	if isStatus(err, http.StatusUnprocessableEntity) {
		m, found, serr := s.search(ctx, email, &o)
		if serr != nil || !found {
			return o, err
		}
		o.Note = "member existed"
		*st = state(m)
		if st.Groups, serr = s.groups(ctx, m.ID, &o); serr != nil {
			return o, serr
		}
		o.Refreshed = true
		return o, nil
	}
	if err != nil {
		return o, err
	}
	m, err := parseCreated(r.Body)
	if err != nil {
		return o, err
	}
	*st = state(m)
	o.Refreshed = true
	return o, nil
}

// Check verifies that every access group, member tag and profile field the
// mapping names exists in the community. Three list requests.
func (s *Sink) Check(ctx context.Context, m *mapping.Mapping) error {
	var o sinks.Outcome
	lists := map[string]map[int64]string{}
	for _, path := range []string{"/access_groups", "/member_tags", "/profile_fields"} {
		all := map[int64]string{}
		for page := 1; ; page++ {
			q := url.Values{"page": {itoa(int64(page))}, "per_page": {"100"}}
			r, err := s.c.Do(ctx, http.MethodGet, path+"?"+q.Encode(), nil, nil)
			merge(&o, r)
			if err != nil {
				return fmt.Errorf("circle: list %s: %w", strings.TrimPrefix(path, "/"), err)
			}
			recs, more, err := parseIDPage(r.Body)
			if err != nil {
				return err
			}
			for k, v := range recs {
				all[k] = v
			}
			if !more || len(recs) == 0 {
				break
			}
		}
		lists[path] = all
	}
	var missing []string
	d := m.Desired(&schemas.Entitlement{}, time.Time{})
	for _, c := range []struct {
		what string
		refs []mapping.Ref
		have map[int64]string
	}{{"access group", d.ManagedCircleGroups, lists["/access_groups"]}, {"member tag", d.ManagedCircle, lists["/member_tags"]}} {
		for _, r := range c.refs {
			name, ok := c.have[r.ID]
			switch {
			case !ok:
				missing = append(missing, fmt.Sprintf("%s %d (%s)", c.what, r.ID, r.Name))
			case !strings.EqualFold(name, r.Name):
				s.log.WarnContext(ctx, "circle "+c.what+" name differs from the mapping", "id", r.ID, "circle", name, "mapping", r.Name)
			}
		}
	}
	keys := map[string]bool{}
	for _, k := range lists["/profile_fields"] {
		keys[k] = true
	}
	pf := m.Circle.ProfileFields
	for _, k := range []string{pf.Plan, pf.Status, pf.Renewal, pf.Synced} {
		if k != "" && !keys[k] {
			missing = append(missing, fmt.Sprintf("profile field %q", k))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("circle: %w: %s (create them in Circle or fix LR_MAPPING_FILE)", sinks.ErrMissing, strings.Join(missing, ", "))
	}
	return nil
}
