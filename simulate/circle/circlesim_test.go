package circlesim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func call(t *testing.T, s *Server, method, path, body string, auth ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rdr io.Reader
	if body != "" {
		rdr = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, Base+path, rdr)
	a := "Bearer " + s.Token()
	if len(auth) > 0 {
		a = auth[0]
	}
	req.Header.Set("Authorization", a)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec
}

func decodeJSON(t *testing.T, rec *httptest.ResponseRecorder, v any) {
	t.Helper()
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("%d %q: %v", rec.Code, rec.Body.String(), err)
	}
}

func newSim(o Options) *Server {
	o.AccessGroups = []Ref{{ID: 1001, Name: "Pro members"}}
	o.MemberTags = []Ref{{ID: 2001, Name: "pro"}}
	o.ProfileFields = []string{"plan", "billing_status"}
	return New(o)
}

func TestAuthAcceptsBothSchemes(t *testing.T) {
	t.Parallel()
	s := newSim(Options{})
	for auth, want := range map[string]int{
		"Bearer " + s.Token(): http.StatusOK, "Token " + s.Token(): http.StatusOK,
		"Bearer nope": http.StatusUnauthorized, s.Token(): http.StatusUnauthorized, "": http.StatusUnauthorized,
	} {
		rec := call(t, s, "GET", "/community_members", "", auth)
		if rec.Code != want {
			t.Errorf("%q: %d, want %d", auth, rec.Code, want)
		}
		if want == http.StatusUnauthorized && !strings.Contains(rec.Body.String(), "The API token is invalid.") {
			t.Errorf("401 body %s", rec.Body)
		}
	}
}

func TestRateLimitPerIPWithRetryAfter(t *testing.T) {
	t.Parallel()
	s := newSim(Options{Limit: 2, Window: time.Second})
	call(t, s, "GET", "/access_groups", "")
	call(t, s, "GET", "/member_tags", "")
	rec := call(t, s, "GET", "/profile_fields", "")
	var body map[string]any
	decodeJSON(t, rec, &body)
	if rec.Code != http.StatusTooManyRequests || body["success"] != false || body["message"] == "" {
		t.Errorf("429 %d %v, want the document's error shape", rec.Code, body)
	}
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 1 {
		t.Errorf("Retry-After %q, want 1", rec.Header().Get("Retry-After"))
	}
	if st := s.Stats(); st.Violations != 1 {
		t.Errorf("violations %d", st.Violations)
	}
}

func TestMemberLifecycle(t *testing.T) {
	t.Parallel()
	s := newSim(Options{})
	rec := call(t, s, "POST", "/community_members", `{"email":"Maria@example.org","member_tag_ids":[2001],"community_member_profile_fields":{"plan":"pro"}}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	var created struct {
		Member memberJSON `json:"community_member"`
	}
	decodeJSON(t, rec, &created)
	m := created.Member
	if len(m.MemberTags) != 1 || *m.FlattenedProfileFields["plan"] != "pro" || m.FlattenedProfileFields["billing_status"] != nil {
		t.Errorf("created %+v", m)
	}
	if rec := call(t, s, "POST", "/community_members", `{"email":"maria@EXAMPLE.org"}`); rec.Code != http.StatusUnprocessableEntity {
		t.Errorf("second create: %d, want 422", rec.Code)
	}
	if st := s.Stats(); st.Invitations != 1 || st.MembersCreated != 1 {
		t.Errorf("stats %+v: one invitation", st)
	}
	var found memberJSON
	decodeJSON(t, call(t, s, "GET", "/community_members/search?email=maria@example.org", ""), &found)
	if found.ID != m.ID {
		t.Errorf("search found %d, want %d", found.ID, m.ID)
	}
	rec = call(t, s, "GET", "/community_members/search?email=nobody@example.org", "")
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "Missing record: community member") {
		t.Errorf("search miss: %d %s", rec.Code, rec.Body)
	}
	before, err := time.Parse(timeFormat, m.UpdatedAt)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	id := strconv.FormatInt(m.ID, 10)
	if rec := call(t, s, "POST", "/access_groups/1001/community_members", `{"email":"maria@example.org"}`); rec.Code != http.StatusCreated {
		t.Errorf("add to group: %d", rec.Code)
	}
	call(t, s, "POST", "/access_groups/1001/community_members", `{"email":"maria@example.org"}`)
	call(t, s, "POST", "/tagged_members", `{"member_tag_id":2001,"user_email":"maria@example.org"}`)
	var groups struct {
		Records []groupJSON `json:"records"`
		HasNext bool        `json:"has_next_page"`
	}
	decodeJSON(t, call(t, s, "GET", "/community_members/"+id+"/access_groups", ""), &groups)
	if len(groups.Records) != 1 || groups.Records[0].ID != 1001 || groups.HasNext {
		t.Errorf("member's groups %+v", groups)
	}
	if st := s.Stats(); st.DuplicateGroupAdds != 1 || st.DuplicateTags != 1 {
		t.Errorf("duplicates %+v", st)
	}
	if rec := call(t, s, "PUT", "/community_members/"+id, `{"community_member_profile_fields":{"billing_status":"active","plan":""}}`); rec.Code != http.StatusOK {
		t.Errorf("update: %d %s", rec.Code, rec.Body)
	}
	if rec := call(t, s, "PUT", "/community_members/"+id, `{"community_member_profile_fields":{"nope":"x"}}`); rec.Code != http.StatusUnprocessableEntity {
		t.Errorf("unknown profile field: %d", rec.Code)
	}
	got, _ := s.Member("maria@example.org")
	if got.Fields["billing_status"] != "active" || got.Fields["plan"] != "" || !got.UpdatedAt.After(before) {
		t.Errorf("after update %+v (updated_at must move from %v)", got, before)
	}
	if rec := call(t, s, "DELETE", "/access_groups/1001/community_members?email=maria@example.org", ""); rec.Code != http.StatusOK {
		t.Errorf("remove from group: %d", rec.Code)
	}
	rec = call(t, s, "DELETE", "/access_groups/1001/community_members?email=maria@example.org", "")
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "access group community member") {
		t.Errorf("second removal: %d %s", rec.Code, rec.Body)
	}
	if rec := call(t, s, "DELETE", "/tagged_members?user_email=maria@example.org&member_tag_id=2001", ""); rec.Code != http.StatusOK {
		t.Errorf("untag: %d", rec.Code)
	}
	if rec := call(t, s, "POST", "/tagged_members", `{"member_tag_id":9,"user_email":"maria@example.org"}`); rec.Code != http.StatusNotFound {
		t.Errorf("unknown tag: %d", rec.Code)
	}
}

func TestListMembersPagesByStatus(t *testing.T) {
	t.Parallel()
	s := newSim(Options{})
	for i := 0; i < 5; i++ {
		if _, err := s.AddMember(MemberSeed{Email: strconv.Itoa(i) + "@example.org"}); err != nil {
			t.Fatal(err)
		}
	}
	call(t, s, "POST", "/community_members", `{"email":"invited@example.org"}`) // pending invitation: not active
	var seen []string
	for page := 1; page < 10; page++ {
		var body struct {
			Records []memberJSON `json:"records"`
			HasNext bool         `json:"has_next_page"`
			Count   int          `json:"count"`
		}
		decodeJSON(t, call(t, s, "GET", "/community_members?per_page=2&page="+strconv.Itoa(page), ""), &body)
		for _, m := range body.Records {
			if m.UpdatedAt == "" {
				t.Errorf("member %d without updated_at", m.ID)
			}
			seen = append(seen, m.Email)
		}
		if body.Count != 5 {
			t.Errorf("count %d, want 5 active", body.Count)
		}
		if !body.HasNext {
			break
		}
	}
	if len(seen) != 5 {
		t.Errorf("pages gave %v", seen)
	}
	var all struct {
		Count int `json:"count"`
	}
	decodeJSON(t, call(t, s, "GET", "/community_members?status=all", ""), &all)
	if all.Count != 6 {
		t.Errorf("status=all count %d, want 6", all.Count)
	}
}

func TestStormIsNotAViolation(t *testing.T) {
	t.Parallel()
	s := newSim(Options{})
	s.Storm(time.Hour)
	rec := call(t, s, "GET", "/member_tags", "")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("storm: %d %v", rec.Code, rec.Header())
	}
	if st := s.Stats(); st.Violations != 0 || st.Injected != 1 {
		t.Errorf("stats %+v", st)
	}
}
