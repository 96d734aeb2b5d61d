// Package circlesim is an HTTP simulator of the part of Circle's Admin API v2
// (circle-admin-v2.yaml) that launchready uses: community members (list with
// updated_at, search by email, show, create, update with profile fields),
// tagged members, access group members and a member's access groups, and the
// lists of access groups, member tags and profile fields. It keeps state,
// checks the Authorization header (Bearer or Token scheme), enforces Circle's
// 2,000 requests / 5 minutes per client IP, counts what a test asserts on
// (requests by route, writes, rate-limit violations, duplicate tags and
// access-group adds, invitations sent) and injects faults on demand (429
// storms, 5xx, slow answers, dropped connections).
//
// The OpenAPI document does not describe the 429 answer; the simulator
// answers with the document's error shape and a Retry-After header in
// seconds. Other undocumented behaviour is marked where it is implemented.
package circlesim

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/launchready/launchready/simulate/internal/simfault"
)

// Base is the path prefix of the Admin API v2.
const Base = "/api/admin/v2"

// Ref is an access group or member tag: the provider's id and name.
type Ref struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// Options configures a Server.
type Options struct {
	// Token is the only API token accepted (default "circle-sim-token"),
	// with either the "Bearer" or the "Token" scheme.
	Token string
	// FirstID is the id of the first member created (default 30001); the
	// member's user_id is id + 50000. Real ids are never reused: give each
	// run of a simulator against long-lived pipeline state a range of its own.
	FirstID int64
	// Limit requests per Window per client IP; defaults to 2,000 per 5 min.
	// A negative Limit disables the limit.
	Limit  int
	Window time.Duration
	// NoRetryAfter leaves the Retry-After header off 429 answers.
	NoRetryAfter bool
	CommunityID  int64
	// AccessGroups, MemberTags and ProfileFields (keys) exist from the start.
	AccessGroups  []Ref
	MemberTags    []Ref
	ProfileFields []string
	Faults        Faults
	// Seed makes fault draws reproducible.
	Seed uint64
	Log  *slog.Logger
}

// Server is a running (or mountable) Circle simulator. Safe for concurrent use.
type Server struct {
	opt Options
	now func() time.Time
	inj *simfault.Injector
	mux *http.ServeMux
	log *slog.Logger

	mu        sync.Mutex
	members   map[int64]*member
	byEmail   map[string]int64
	groups    map[int64]*group
	tags      map[int64]*tagDef
	fields    []profileField
	nextID    int64
	nextRecID int64
	win       simfault.Window
	stats     Stats
	ln        simfault.Listener
}

// New returns a simulator; Handler serves it, or Start listens on an address.
func New(o Options) *Server {
	if o.Token == "" {
		o.Token = "circle-sim-token"
	}
	if o.Limit == 0 {
		o.Limit = 2000
	}
	if o.Window == 0 {
		o.Window = 5 * time.Minute
	}
	if o.CommunityID == 0 {
		o.CommunityID = 1
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &Server{
		opt: o, now: time.Now, inj: newInjector(o.Faults, o.Seed), mux: http.NewServeMux(),
		log:     o.Log.With("component", "circlesim"),
		members: map[int64]*member{}, byEmail: map[string]int64{}, groups: map[int64]*group{}, tags: map[int64]*tagDef{},
		nextID: firstID(o.FirstID, 30000), nextRecID: 1,
		win:   simfault.NewWindow(o.Limit, o.Window),
		stats: Stats{Requests: map[string]int{}},
	}
	created := s.now().UTC()
	for _, g := range o.AccessGroups {
		s.groups[g.ID] = &group{Ref: g, createdAt: created}
	}
	for _, t := range o.MemberTags {
		s.tags[t.ID] = &tagDef{Ref: t, createdAt: created}
	}
	for i, k := range o.ProfileFields {
		s.fields = append(s.fields, profileField{id: int64(i + 1), key: k, createdAt: created})
	}
	s.routes()
	return s
}

// Handler serves the API under /api/admin/v2/ and the admin endpoints under /_sim/.
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens on addr and serves in the background. It returns the base
// URL of the server (the API is under URL+Base).
func (s *Server) Start(addr string) (string, error) {
	return s.ln.Start(addr, s.mux, s.log, "circle simulator")
}

// URL is the base URL after Start ("" before).
func (s *Server) URL() string { return s.ln.URL() }

// Token is the API token clients must send.
func (s *Server) Token() string { return s.opt.Token }

// Close stops the server if it was started.
func (s *Server) Close() error { return s.ln.Close() }

// SetFaults replaces the injected faults.
func (s *Server) SetFaults(f Faults) { s.inj.Set(f) }

// Storm answers every request with 429 for d from now.
func (s *Server) Storm(d time.Duration) { s.inj.Storm(s.now().Add(d)) }

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.clone()
}

// ResetStats zeroes the counters (state and the rate-limit window are kept).
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{Requests: map[string]int{}}
}

func (s *Server) routes() {
	s.api("GET /community_members", s.listMembers)
	s.api("POST /community_members", s.createMember)
	s.api("GET /community_members/search", s.searchMember)
	s.api("GET /community_members/{id}", s.showMember)
	s.api("PUT /community_members/{id}", s.updateMember)
	s.api("DELETE /community_members/{id}", s.deactivateMember)
	s.api("GET /community_members/{community_member_id}/access_groups", s.memberGroups)
	s.api("GET /tagged_members", s.listTagged)
	s.api("POST /tagged_members", s.tagMember)
	s.api("DELETE /tagged_members", s.untagMember)
	s.api("GET /access_groups", s.listGroups)
	s.api("GET /access_groups/{access_group_id}/community_members", s.listGroupMembers)
	s.api("POST /access_groups/{access_group_id}/community_members", s.addGroupMember)
	s.api("DELETE /access_groups/{access_group_id}/community_members", s.removeGroupMember)
	s.api("GET /access_groups/{access_group_id}/community_member", s.showGroupMember)
	s.api("GET /member_tags", s.listTags)
	s.api("GET /profile_fields", s.listFields)
	s.adminRoutes(s.mux)
}

// api registers a route (relative to Base) behind the gate every request
// passes: count, authenticate, rate-limit by client IP, inject faults.
func (s *Server) api(pattern string, h http.HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	full := method + " " + Base + path
	s.mux.HandleFunc(full, func(w http.ResponseWriter, r *http.Request) {
		now := s.now()
		write := r.Method != http.MethodGet
		s.mu.Lock()
		s.stats.Requests[full]++
		if !s.authorized(r.Header.Get("Authorization")) {
			s.stats.Unauthorized++
			s.mu.Unlock()
			simfault.WriteJSON(w, http.StatusUnauthorized, errBody("The API token is invalid.", map[string]any{}))
			return
		}
		if write {
			s.stats.Writes++
		}
		ok, wait := s.win.Admit(clientIP(r), now)
		if !ok {
			s.stats.Violations++
			s.stats.Throttled++
			s.mu.Unlock()
			s.tooMany(w, wait)
			return
		}
		s.mu.Unlock()
		f, delay, applyFirst := s.inj.Draw(now)
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if f != faultNone {
			s.mu.Lock()
			s.stats.Injected++
			if f == faultThrottle {
				s.stats.Throttled++
			}
			s.mu.Unlock()
		}
		switch f {
		case faultThrottle:
			s.tooMany(w, time.Second)
			return
		case faultError:
			simfault.WriteJSON(w, s.inj.ErrorStatus(), errBody("Something went wrong. Please try again later.", map[string]any{}))
			return
		case faultDrop:
			if applyFirst && write {
				h(httptest.NewRecorder(), r)
			}
			dropConnection(w)
			return
		}
		h(w, r)
	})
}

func (s *Server) authorized(h string) bool {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	return ok && (scheme == "Bearer" || scheme == "Token") && strings.TrimSpace(tok) == s.opt.Token
}

// tooMany is the simulator's 429: the document's error shape, and
// Retry-After in whole seconds (rounded up) unless disabled.
func (s *Server) tooMany(w http.ResponseWriter, wait time.Duration) {
	if !s.opt.NoRetryAfter {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	}
	simfault.WriteJSON(w, http.StatusTooManyRequests, errBody("Too many requests. Please try again later.", map[string]any{}))
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// dropConnection closes the client's connection without an answer.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // net/http's documented way to abort a response
}

// errBody is the document's error schema.
func errBody(msg string, details any) map[string]any {
	return map[string]any{"success": false, "message": msg, "error_details": details}
}

// missing is the document's 404 answer for a missing record of kind what.
func missing(w http.ResponseWriter, what string) {
	simfault.WriteJSON(w, http.StatusNotFound, errBody("Oops! Missing record. Please try again later.", map[string]string{"message": "Missing record: " + what}))
}

func unprocessable(w http.ResponseWriter, msg string) {
	simfault.WriteJSON(w, http.StatusUnprocessableEntity, errBody(msg, map[string]any{}))
}

func normEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

func firstID(first, def int64) int64 {
	if first > 0 {
		return first - 1
	}
	return def
}
