package circlesim

import (
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/launchready/launchready/simulate/internal/simfault"
)

const timeFormat = "2006-01-02T15:04:05.000Z"

func ts(t time.Time) string { return t.UTC().Format(timeFormat) }

type tagRef struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

type memberFieldValue struct {
	ID           int64   `json:"id"`
	Text         *string `json:"text"`
	Textarea     *string `json:"textarea"`
	DisplayValue *string `json:"display_value"`
	CreatedAt    string  `json:"created_at"`
	UpdatedAt    string  `json:"updated_at"`
}

type fieldJSON struct {
	ID                          int64             `json:"id"`
	Label                       string            `json:"label"`
	FieldType                   string            `json:"field_type"`
	Key                         string            `json:"key"`
	Placeholder                 *string           `json:"placeholder"`
	Description                 *string           `json:"description"`
	Required                    bool              `json:"required"`
	AllowNull                   bool              `json:"allow_null"`
	PlatformField               bool              `json:"platform_field"`
	Archived                    bool              `json:"archived"`
	CreatedAt                   string            `json:"created_at"`
	UpdatedAt                   string            `json:"updated_at"`
	CommunityMemberProfileField *memberFieldValue `json:"community_member_profile_field"`
	NumberOptions               *struct{}         `json:"number_options"`
	Choices                     []any             `json:"choices"`
	Pages                       []any             `json:"pages"`
}

func (f profileField) json() fieldJSON {
	return fieldJSON{ID: f.id, Label: f.key, FieldType: "text", Key: f.key, AllowNull: true, CreatedAt: ts(f.createdAt), UpdatedAt: ts(f.createdAt), Choices: []any{}, Pages: []any{}}
}

type memberJSON struct {
	ID                     int64              `json:"id"`
	FirstName              *string            `json:"first_name"`
	LastName               *string            `json:"last_name"`
	Email                  string             `json:"email"`
	Headline               *string            `json:"headline"`
	CreatedAt              string             `json:"created_at"`
	UpdatedAt              string             `json:"updated_at"`
	CommunityID            int64              `json:"community_id"`
	LastSeenAt             *string            `json:"last_seen_at"`
	ProfileConfirmedAt     *string            `json:"profile_confirmed_at"`
	ProfileURL             string             `json:"profile_url"`
	PublicUID              string             `json:"public_uid"`
	AvatarURL              *string            `json:"avatar_url"`
	UserID                 int64              `json:"user_id"`
	Name                   string             `json:"name"`
	AcceptedInvitation     string             `json:"accepted_invitation"`
	Active                 bool               `json:"active"`
	SSOProviderUserID      *string            `json:"sso_provider_user_id"`
	MemberTags             []tagRef           `json:"member_tags"`
	ProfileFields          []fieldJSON        `json:"profile_fields"`
	FlattenedProfileFields map[string]*string `json:"flattened_profile_fields"`
	PostsCount             int                `json:"posts_count"`
	CommentsCount          int                `json:"comments_count"`
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// json renders m as the document's community_member: every profile field of
// the community, with the member's value or null.
func (s *Server) json(m *member) memberJSON {
	first, last, _ := strings.Cut(m.name, " ")
	out := memberJSON{
		ID: m.id, FirstName: strPtr(first), LastName: strPtr(last), Email: m.email, Headline: strPtr(m.headline),
		CreatedAt: ts(m.createdAt), UpdatedAt: ts(m.updatedAt), CommunityID: s.opt.CommunityID,
		PublicUID: m.publicUID(), UserID: m.userID, Name: m.name, AcceptedInvitation: m.acceptedInvitation,
		Active: m.active, SSOProviderUserID: strPtr(m.ssoUserID), MemberTags: []tagRef{},
		ProfileFields: []fieldJSON{}, FlattenedProfileFields: map[string]*string{},
	}
	out.ProfileURL = "https://community.example/u/" + out.PublicUID
	for _, id := range sortedKeys(m.tags) {
		out.MemberTags = append(out.MemberTags, tagRef{ID: id, Name: s.tags[id].Name})
	}
	for _, f := range s.fields {
		fj := f.json()
		if v, ok := m.fields[f.key]; ok {
			v := v
			out.FlattenedProfileFields[f.key] = &v
			fj.CommunityMemberProfileField = &memberFieldValue{ID: f.id*100000 + m.id, Text: &v, DisplayValue: &v, CreatedAt: ts(m.updatedAt), UpdatedAt: ts(m.updatedAt)}
		} else {
			out.FlattenedProfileFields[f.key] = nil
		}
		out.ProfileFields = append(out.ProfileFields, fj)
	}
	return out
}

// paged cuts n records by the page and per_page parameters (default 60,
// at most 100) and returns the bounds and the document's list envelope.
func paged(r *http.Request, n int) (lo, hi int, env map[string]any, ok bool) {
	q := r.URL.Query()
	pg, per := 1, 60
	if v := q.Get("page"); v != "" {
		x, err := strconv.Atoi(v)
		if err != nil || x < 1 {
			return 0, 0, nil, false
		}
		pg = x
	}
	if v := q.Get("per_page"); v != "" {
		x, err := strconv.Atoi(v)
		if err != nil || x < 1 {
			return 0, 0, nil, false
		}
		per = min(x, 100)
	}
	lo = min((pg-1)*per, n)
	hi = min(lo+per, n)
	env = map[string]any{"page": pg, "per_page": per, "has_next_page": hi < n, "count": n, "page_count": (n + per - 1) / per}
	return lo, hi, env, true
}

func badPage(w http.ResponseWriter) { unprocessable(w, "Invalid pagination parameters") }

func decodeBody(r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return false
	}
	if strings.TrimSpace(string(b)) == "" {
		return true
	}
	return json.Unmarshal(b, v) == nil
}

func validEmail(e string) bool {
	at := strings.Index(e, "@")
	return at > 0 && at < len(e)-1 && !strings.ContainsAny(e, " \t\r\n,;<>")
}

func (s *Server) listMembers(w http.ResponseWriter, r *http.Request) {
	status := r.URL.Query().Get("status")
	if status != "" && status != "all" && status != "inactive" {
		unprocessable(w, "Invalid status")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ms []*member
	for _, m := range s.members {
		if status == "all" || (status == "inactive") == !m.active {
			ms = append(ms, m)
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].id < ms[j].id })
	lo, hi, env, ok := paged(r, len(ms))
	if !ok {
		badPage(w)
		return
	}
	recs := make([]memberJSON, 0, hi-lo)
	for _, m := range ms[lo:hi] {
		recs = append(recs, s.json(m))
	}
	env["records"] = recs
	simfault.WriteJSON(w, http.StatusOK, env)
}

func (s *Server) searchMember(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byAddress(r.URL.Query().Get("email"))
	if m == nil {
		missing(w, "community member")
		return
	}
	simfault.WriteJSON(w, http.StatusOK, s.json(m))
}

func (s *Server) memberByPath(w http.ResponseWriter, r *http.Request, name string) *member {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || s.members[id] == nil {
		missing(w, "community member")
		return nil
	}
	return s.members[id]
}

func (s *Server) showMember(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.memberByPath(w, r, "id"); m != nil {
		simfault.WriteJSON(w, http.StatusOK, s.json(m))
	}
}

type memberRequest struct {
	Email          string            `json:"email"`
	Name           string            `json:"name"`
	Headline       *string           `json:"headline"`
	SkipInvitation bool              `json:"skip_invitation"`
	MemberTagIDs   *[]int64          `json:"member_tag_ids"`
	ProfileFields  map[string]string `json:"community_member_profile_fields"`
}

// createMember invites a member (an invitation email unless skip_invitation).
// The document does not say what an existing email gets; the simulator
// answers 422, which a client must handle by looking the member up.
func (s *Server) createMember(w http.ResponseWriter, r *http.Request) {
	var req memberRequest
	if !decodeBody(r, &req) {
		unprocessable(w, "Invalid request body")
		return
	}
	if !validEmail(strings.TrimSpace(req.Email)) {
		unprocessable(w, "Invalid email address.")
		return
	}
	var tags []int64
	if req.MemberTagIDs != nil {
		tags = *req.MemberTagIDs
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byAddress(req.Email) != nil {
		unprocessable(w, "Validation failed: Email has already been taken")
		return
	}
	if err := s.checkRefs(tags, nil, req.ProfileFields); err != nil {
		unprocessable(w, "Validation failed: unknown "+err.Error())
		return
	}
	m := s.create(req.Email, req.Name, "", req.SkipInvitation, tags, req.ProfileFields)
	if req.Headline != nil {
		m.headline = *req.Headline
	}
	msg := "This user has been added to the community."
	if !req.SkipInvitation {
		m.invited = true
		s.stats.Invitations++
		msg = "This user has been invited to the community."
	}
	simfault.WriteJSON(w, http.StatusCreated, map[string]any{"message": msg, "community_member": s.json(m)})
}

// updateMember sets the name, headline, profile fields ("" clears one) and,
// when member_tag_ids is present, the member's whole set of tags.
func (s *Server) updateMember(w http.ResponseWriter, r *http.Request) {
	var req memberRequest
	if !decodeBody(r, &req) {
		unprocessable(w, "Invalid request body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.memberByPath(w, r, "id")
	if m == nil {
		return
	}
	var tags []int64
	if req.MemberTagIDs != nil {
		tags = *req.MemberTagIDs
	}
	if err := s.checkRefs(tags, nil, req.ProfileFields); err != nil {
		unprocessable(w, "Validation failed: unknown "+err.Error())
		return
	}
	if req.Name != "" {
		m.name = req.Name
	}
	if req.Headline != nil {
		m.headline = *req.Headline
	}
	if req.MemberTagIDs != nil {
		keep := map[int64]record{}
		for _, id := range tags {
			if rec, ok := m.tags[id]; ok {
				keep[id] = rec
			} else {
				keep[id] = record{id: s.recordID(), at: s.now().UTC()}
			}
		}
		m.tags = keep
	}
	s.setFields(m, req.ProfileFields)
	s.touch(m)
	simfault.WriteJSON(w, http.StatusOK, s.json(m))
}

func (s *Server) deactivateMember(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.memberByPath(w, r, "id"); m != nil {
		m.active = false
		s.touch(m)
		simfault.WriteJSON(w, http.StatusOK, map[string]string{"message": "The community member has been removed from the community."})
	}
}
