package circlesim

import (
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/launchready/launchready/simulate/internal/simfault"
)

type groupJSON struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Status      string `json:"status"`
	CommunityID int64  `json:"community_id"`
	CreatedAt   string `json:"created_at"`
	UpdatedAt   string `json:"updated_at"`
}

func (s *Server) groupJSON(g *group) groupJSON {
	return groupJSON{ID: g.ID, Name: g.Name, Status: "active", CommunityID: s.opt.CommunityID, CreatedAt: ts(g.createdAt), UpdatedAt: ts(g.createdAt)}
}

func (s *Server) memberGroups(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.memberByPath(w, r, "community_member_id")
	if m == nil {
		return
	}
	ids := sortedKeys(m.groups)
	lo, hi, env, ok := paged(r, len(ids))
	if !ok {
		badPage(w)
		return
	}
	recs := make([]groupJSON, 0, hi-lo)
	for _, id := range ids[lo:hi] {
		recs = append(recs, s.groupJSON(s.groups[id]))
	}
	env["records"] = recs
	simfault.WriteJSON(w, http.StatusOK, env)
}

type taggedJSON struct {
	ID                int64  `json:"id"`
	MemberTagID       int64  `json:"member_tag_id"`
	MemberTagName     string `json:"member_tag_name"`
	UserID            int64  `json:"user_id"`
	UserEmail         string `json:"user_email"`
	CommunityMemberID int64  `json:"community_member_id"`
	CreatedAt         string `json:"created_at"`
	UpdatedAt         string `json:"updated_at"`
}

func (s *Server) listTagged(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var recs []taggedJSON
	for _, m := range s.members {
		for id, rec := range m.tags {
			recs = append(recs, taggedJSON{ID: rec.id, MemberTagID: id, MemberTagName: s.tags[id].Name, UserID: m.userID, UserEmail: m.email, CommunityMemberID: m.id, CreatedAt: ts(rec.at), UpdatedAt: ts(rec.at)})
		}
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	lo, hi, env, ok := paged(r, len(recs))
	if !ok {
		badPage(w)
		return
	}
	env["records"] = append([]taggedJSON{}, recs[lo:hi]...)
	simfault.WriteJSON(w, http.StatusOK, env)
}

// tagMember tags a member by email. The document does not say what tagging
// an already tagged member answers; the simulator answers 201 and counts a
// duplicate.
func (s *Server) tagMember(w http.ResponseWriter, r *http.Request) {
	var req struct {
		MemberTagID int64  `json:"member_tag_id"`
		UserEmail   string `json:"user_email"`
	}
	if !decodeBody(r, &req) {
		unprocessable(w, "Invalid request body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tags[req.MemberTagID] == nil {
		missing(w, "member tag")
		return
	}
	m := s.byAddress(req.UserEmail)
	if m == nil {
		missing(w, "user")
		return
	}
	if _, ok := m.tags[req.MemberTagID]; ok {
		s.stats.DuplicateTags++
	} else {
		m.tags[req.MemberTagID] = record{id: s.recordID(), at: s.now().UTC()}
		s.touch(m)
	}
	simfault.WriteJSON(w, http.StatusCreated, map[string]string{"message": "Person tagged successfully!"})
}

// untagMember answers 404 when the member does not have the tag.
func (s *Server) untagMember(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tagID, _ := strconv.ParseInt(q.Get("member_tag_id"), 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tags[tagID] == nil {
		missing(w, "member tag")
		return
	}
	m := s.byAddress(q.Get("user_email"))
	if m == nil {
		missing(w, "user")
		return
	}
	if _, ok := m.tags[tagID]; !ok {
		missing(w, "tagged member")
		return
	}
	delete(m.tags, tagID)
	s.touch(m)
	simfault.WriteJSON(w, http.StatusOK, map[string]string{"message": "Tag has been removed"})
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]int64, 0, len(s.groups))
	for id := range s.groups {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	lo, hi, env, ok := paged(r, len(ids))
	if !ok {
		badPage(w)
		return
	}
	recs := make([]groupJSON, 0, hi-lo)
	for _, id := range ids[lo:hi] {
		recs = append(recs, s.groupJSON(s.groups[id]))
	}
	env["records"] = recs
	simfault.WriteJSON(w, http.StatusOK, env)
}

type membershipJSON struct {
	ID                int64  `json:"id"`
	AccessGroupID     int64  `json:"access_group_id"`
	CommunityMemberID int64  `json:"community_member_id"`
	CommunityID       int64  `json:"community_id"`
	CreatedAt         string `json:"created_at"`
	UpdatedAt         string `json:"updated_at"`
}

func (s *Server) groupByPath(w http.ResponseWriter, r *http.Request) *group {
	id, err := strconv.ParseInt(r.PathValue("access_group_id"), 10, 64)
	if err != nil || s.groups[id] == nil {
		missing(w, "access group")
		return nil
	}
	return s.groups[id]
}

func (s *Server) listGroupMembers(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupByPath(w, r)
	if g == nil {
		return
	}
	var recs []membershipJSON
	for _, m := range s.members {
		if rec, ok := m.groups[g.ID]; ok {
			recs = append(recs, membershipJSON{ID: rec.id, AccessGroupID: g.ID, CommunityMemberID: m.id, CommunityID: s.opt.CommunityID, CreatedAt: ts(rec.at), UpdatedAt: ts(rec.at)})
		}
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	lo, hi, env, ok := paged(r, len(recs))
	if !ok {
		badPage(w)
		return
	}
	env["records"] = append([]membershipJSON{}, recs[lo:hi]...)
	simfault.WriteJSON(w, http.StatusOK, env)
}

// addGroupMember adds a member by email. The document does not say what
// adding a member twice answers; the simulator answers 201 and counts it.
func (s *Server) addGroupMember(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Email string `json:"email"`
	}
	if !decodeBody(r, &req) {
		unprocessable(w, "Invalid request body")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupByPath(w, r)
	if g == nil {
		return
	}
	m := s.byAddress(req.Email)
	if m == nil {
		missing(w, "user")
		return
	}
	if _, ok := m.groups[g.ID]; ok {
		s.stats.DuplicateGroupAdds++
	} else {
		m.groups[g.ID] = record{id: s.recordID(), at: s.now().UTC()}
		s.touch(m)
	}
	simfault.WriteJSON(w, http.StatusCreated, map[string]string{"message": "Member has been added to '" + g.Name + "' access group."})
}

func (s *Server) removeGroupMember(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupByPath(w, r)
	if g == nil {
		return
	}
	m := s.byAddress(r.URL.Query().Get("email"))
	if m == nil {
		missing(w, "user")
		return
	}
	if _, ok := m.groups[g.ID]; !ok {
		missing(w, "access group community member")
		return
	}
	delete(m.groups, g.ID)
	s.touch(m)
	simfault.WriteJSON(w, http.StatusOK, map[string]string{"message": "Member removed from '" + g.Name + "' access group."})
}

func (s *Server) showGroupMember(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groupByPath(w, r)
	if g == nil {
		return
	}
	m := s.byAddress(r.URL.Query().Get("email"))
	if m == nil {
		missing(w, "user")
		return
	}
	rec, ok := m.groups[g.ID]
	if !ok {
		missing(w, "access group community member")
		return
	}
	simfault.WriteJSON(w, http.StatusOK, membershipJSON{ID: rec.id, AccessGroupID: g.ID, CommunityMemberID: m.id, CommunityID: s.opt.CommunityID, CreatedAt: ts(rec.at), UpdatedAt: ts(rec.at)})
}

func (s *Server) listTags(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]int64, 0, len(s.tags))
	for id := range s.tags {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	lo, hi, env, ok := paged(r, len(ids))
	if !ok {
		badPage(w)
		return
	}
	recs := make([]map[string]any, 0, hi-lo)
	for _, id := range ids[lo:hi] {
		t := s.tags[id]
		n := 0
		for _, m := range s.members {
			if _, ok := m.tags[id]; ok {
				n++
			}
		}
		recs = append(recs, map[string]any{"id": t.ID, "name": t.Name, "is_public": true, "display_format": "label", "tagged_members_count": n, "created_at": ts(t.createdAt), "updated_at": ts(t.createdAt)})
	}
	env["records"] = recs
	simfault.WriteJSON(w, http.StatusOK, env)
}

func (s *Server) listFields(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	label := strings.ToLower(r.URL.Query().Get("label"))
	var fs []profileField
	for _, f := range s.fields {
		if label == "" || strings.Contains(strings.ToLower(f.key), label) {
			fs = append(fs, f)
		}
	}
	lo, hi, env, ok := paged(r, len(fs))
	if !ok {
		badPage(w)
		return
	}
	recs := make([]fieldJSON, 0, hi-lo)
	for _, f := range fs[lo:hi] {
		recs = append(recs, f.json())
	}
	env["records"] = recs
	simfault.WriteJSON(w, http.StatusOK, env)
}
