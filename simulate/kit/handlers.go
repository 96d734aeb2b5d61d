package kitsim

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/launchready/launchready/simulate/internal/simfault"
)

const timeFormat = "2006-01-02T15:04:05Z"

type subscriberJSON struct {
	ID           int64              `json:"id"`
	FirstName    *string            `json:"first_name"`
	EmailAddress string             `json:"email_address"`
	State        string             `json:"state"`
	CreatedAt    string             `json:"created_at"`
	Fields       map[string]*string `json:"fields"`
	TaggedAt     string             `json:"tagged_at,omitempty"`
}

// json renders sub as Kit does: every custom field of the account, null when unset.
func (s *Server) json(sub *subscriber) subscriberJSON {
	out := subscriberJSON{ID: sub.id, FirstName: sub.firstName, EmailAddress: sub.email, State: sub.state, CreatedAt: sub.createdAt.Format(timeFormat), Fields: map[string]*string{}}
	for _, f := range s.fields {
		if v, ok := sub.fields[f.key]; ok {
			out.Fields[f.key] = &v
		} else {
			out.Fields[f.key] = nil
		}
	}
	return out
}

type pagination struct {
	HasPrevious bool    `json:"has_previous_page"`
	HasNext     bool    `json:"has_next_page"`
	StartCursor *string `json:"start_cursor"`
	EndCursor   *string `json:"end_cursor"`
	PerPage     int     `json:"per_page"`
}

func cursor(id int64) *string {
	c := base64.RawURLEncoding.EncodeToString([]byte("id:" + strconv.FormatInt(id, 10)))
	return &c
}

func parseCursor(c string) (int64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !strings.HasPrefix(string(b), "id:") {
		return 0, false
	}
	id, err := strconv.ParseInt(string(b[3:]), 10, 64)
	return id, err == nil
}

// page cuts ids (ascending) by Kit's cursor parameters after, before and per_page.
func page(r *http.Request, ids []int64) ([]int64, pagination, bool) {
	q := r.URL.Query()
	per := 500
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, pagination{}, false
		}
		per = min(n, 1000)
	}
	lo, hi := 0, len(ids)
	if a := q.Get("after"); a != "" {
		id, ok := parseCursor(a)
		if !ok {
			return nil, pagination{}, false
		}
		lo = sort.Search(len(ids), func(i int) bool { return ids[i] > id })
	}
	if b := q.Get("before"); b != "" {
		id, ok := parseCursor(b)
		if !ok {
			return nil, pagination{}, false
		}
		hi = sort.Search(len(ids), func(i int) bool { return ids[i] >= id })
		lo = max(lo, hi-per)
	}
	end := min(hi, lo+per)
	out := ids[lo:end]
	p := pagination{HasPrevious: lo > 0, HasNext: end < len(ids), PerPage: per}
	if len(out) > 0 {
		p.StartCursor, p.EndCursor = cursor(out[0]), cursor(out[len(out)-1])
	}
	return out, p, true
}

func decodeBody(r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return false
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return true
	}
	return json.Unmarshal(b, v) == nil
}

func notFound(w http.ResponseWriter) {
	simfault.WriteJSON(w, http.StatusNotFound, errorsBody("Not Found"))
}

func unprocessable(w http.ResponseWriter, msg string) {
	simfault.WriteJSON(w, http.StatusUnprocessableEntity, errorsBody(msg))
}

func pathID(r *http.Request, name string) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	return id, err == nil
}

func validEmail(e string) bool {
	at := strings.Index(e, "@")
	return at > 0 && at < len(e)-1 && !strings.ContainsAny(e, " \t\r\n,;<>")
}

// listSubscribers filters by email_address and status (active unless
// asked otherwise; "all" for every state) with cursor pagination.
func (s *Server) listSubscribers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status := q.Get("status")
	if status == "" {
		status = StateActive
	}
	if status != "all" && !validStates[status] {
		unprocessable(w, "Status is not valid")
		return
	}
	email := normEmail(q.Get("email_address"))
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []int64
	for id, sub := range s.subs {
		if (email == "" || normEmail(sub.email) == email) && (status == "all" || sub.state == status) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	ids, p, ok := page(r, ids)
	if !ok {
		unprocessable(w, "Pagination parameters are not valid")
		return
	}
	out := make([]subscriberJSON, 0, len(ids))
	for _, id := range ids {
		out = append(out, s.json(s.subs[id]))
	}
	simfault.WriteJSON(w, http.StatusOK, map[string]any{"subscribers": out, "pagination": p})
}

type upsertRequest struct {
	EmailAddress string            `json:"email_address"`
	FirstName    *string           `json:"first_name"`
	State        *string           `json:"state"`
	Fields       map[string]string `json:"fields"`
}

// upsertSubscriber creates a subscriber (201) or, for a known email, updates
// its first name and fields (200); it never changes an existing state.
func (s *Server) upsertSubscriber(w http.ResponseWriter, r *http.Request) {
	var req upsertRequest
	if !decodeBody(r, &req) {
		unprocessable(w, "Request body is not valid JSON")
		return
	}
	if !validEmail(strings.TrimSpace(req.EmailAddress)) {
		unprocessable(w, "Email address is invalid")
		return
	}
	state := StateActive
	if req.State != nil && *req.State != "" {
		if !validStates[*req.State] {
			unprocessable(w, "State is not valid")
			return
		}
		state = *req.State
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub := s.byAddress(req.EmailAddress); sub != nil {
		if req.FirstName != nil {
			sub.firstName = req.FirstName
		}
		s.setFields(sub, req.Fields)
		simfault.WriteJSON(w, http.StatusOK, map[string]any{"subscriber": s.json(sub)})
		return
	}
	sub := s.create(req.EmailAddress, req.FirstName, state, req.Fields)
	simfault.WriteJSON(w, http.StatusCreated, map[string]any{"subscriber": s.json(sub)})
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) *subscriber {
	id, ok := pathID(r, "id")
	if !ok || s.subs[id] == nil {
		notFound(w)
		return nil
	}
	return s.subs[id]
}

func (s *Server) getSubscriber(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub := s.lookup(w, r); sub != nil {
		simfault.WriteJSON(w, http.StatusOK, map[string]any{"subscriber": s.json(sub)})
	}
}

// updateSubscriber changes the first name, email address and custom fields.
// Kit's reference documents PUT with email_address required; PATCH (as the
// provider notes name it) takes any subset.
func (s *Server) updateSubscriber(w http.ResponseWriter, r *http.Request) {
	var req upsertRequest
	if !decodeBody(r, &req) {
		unprocessable(w, "Request body is not valid JSON")
		return
	}
	if r.Method == http.MethodPut && strings.TrimSpace(req.EmailAddress) == "" {
		unprocessable(w, "Email address can't be blank")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.lookup(w, r)
	if sub == nil {
		return
	}
	if e := strings.TrimSpace(req.EmailAddress); e != "" && normEmail(e) != normEmail(sub.email) {
		if !validEmail(e) {
			unprocessable(w, "Email address is invalid")
			return
		}
		if s.byAddress(e) != nil {
			unprocessable(w, "Email address has already been taken")
			return
		}
		delete(s.byEmail, normEmail(sub.email))
		sub.email = e
		s.byEmail[normEmail(e)] = sub.id
	}
	if req.FirstName != nil {
		sub.firstName = req.FirstName
	}
	s.setFields(sub, req.Fields)
	simfault.WriteJSON(w, http.StatusOK, map[string]any{"subscriber": s.json(sub)})
}

func (s *Server) unsubscribe(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub := s.lookup(w, r); sub != nil {
		s.unsubscribeLocked(sub)
		w.WriteHeader(http.StatusNoContent)
	}
}

type tagJSON struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	CreatedAt string `json:"created_at,omitempty"`
	TaggedAt  string `json:"tagged_at,omitempty"`
}

func (s *Server) subscriberTags(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.lookup(w, r)
	if sub == nil {
		return
	}
	ids := make([]int64, 0, len(sub.tags))
	for id := range sub.tags {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	ids, p, ok := page(r, ids)
	if !ok {
		unprocessable(w, "Pagination parameters are not valid")
		return
	}
	out := make([]tagJSON, 0, len(ids))
	for _, id := range ids {
		out = append(out, tagJSON{ID: id, Name: s.tags[id].Name, TaggedAt: sub.tags[id].Format(timeFormat)})
	}
	simfault.WriteJSON(w, http.StatusOK, map[string]any{"tags": out, "pagination": p})
}

func (s *Server) listTags(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]int64, 0, len(s.tags))
	for id := range s.tags {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	ids, p, ok := page(r, ids)
	if !ok {
		unprocessable(w, "Pagination parameters are not valid")
		return
	}
	out := make([]tagJSON, 0, len(ids))
	for _, id := range ids {
		t := s.tags[id]
		out = append(out, tagJSON{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt.Format(timeFormat)})
	}
	simfault.WriteJSON(w, http.StatusOK, map[string]any{"tags": out, "pagination": p})
}

// createTag returns the existing tag (200) when the name is taken, as Kit does.
func (s *Server) createTag(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if !decodeBody(r, &req) || strings.TrimSpace(req.Name) == "" {
		unprocessable(w, "Name can't be blank")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tags {
		if strings.EqualFold(t.Name, req.Name) {
			simfault.WriteJSON(w, http.StatusOK, map[string]any{"tag": tagJSON{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt.Format(timeFormat)}})
			return
		}
	}
	t := s.addTag(Tag{Name: strings.TrimSpace(req.Name)})
	simfault.WriteJSON(w, http.StatusCreated, map[string]any{"tag": tagJSON{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt.Format(timeFormat)}})
}

// tagged answers a tagging: 201 when new, 200 when the subscriber already
// had the tag (counted as a duplicate).
func (s *Server) tagged(w http.ResponseWriter, sub *subscriber, t *Tag) {
	status := http.StatusOK
	if s.tag(sub, t) {
		status = http.StatusCreated
	}
	out := s.json(sub)
	out.TaggedAt = sub.tags[t.ID].Format(timeFormat)
	simfault.WriteJSON(w, status, map[string]any{"subscriber": out})
}

func (s *Server) tagFor(w http.ResponseWriter, r *http.Request) *Tag {
	id, ok := pathID(r, "tag_id")
	if !ok || s.tags[id] == nil {
		notFound(w)
		return nil
	}
	return s.tags[id]
}

func (s *Server) tagByID(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tagFor(w, r)
	if t == nil {
		return
	}
	if sub := s.lookup(w, r); sub != nil {
		s.tagged(w, sub, t)
	}
}

func (s *Server) untagByID(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tagFor(w, r)
	if t == nil {
		return
	}
	if sub := s.lookup(w, r); sub != nil {
		s.untag(sub, t)
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) byEmailBody(w http.ResponseWriter, r *http.Request) *subscriber {
	var req struct {
		EmailAddress string `json:"email_address"`
	}
	if !decodeBody(r, &req) {
		unprocessable(w, "Request body is not valid JSON")
		return nil
	}
	if req.EmailAddress == "" {
		req.EmailAddress = r.URL.Query().Get("email_address")
	}
	sub := s.byAddress(req.EmailAddress)
	if sub == nil {
		notFound(w)
	}
	return sub
}

func (s *Server) tagByEmail(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tagFor(w, r)
	if t == nil {
		return
	}
	if sub := s.byEmailBody(w, r); sub != nil {
		s.tagged(w, sub, t)
	}
}

func (s *Server) untagByEmail(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tagFor(w, r)
	if t == nil {
		return
	}
	if sub := s.byEmailBody(w, r); sub != nil {
		s.untag(sub, t)
		w.WriteHeader(http.StatusNoContent)
	}
}

type fieldJSON struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Key   string `json:"key"`
	Label string `json:"label"`
}

func (f field) json() fieldJSON {
	return fieldJSON{ID: f.id, Name: "ck_field_" + strconv.FormatInt(f.id, 10) + "_" + f.key, Key: f.key, Label: f.label}
}

func (s *Server) listFields(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	byID := map[int64]field{}
	ids := make([]int64, 0, len(s.fields))
	for _, f := range s.fields {
		byID[f.id] = f
		ids = append(ids, f.id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	ids, p, ok := page(r, ids)
	if !ok {
		unprocessable(w, "Pagination parameters are not valid")
		return
	}
	out := make([]fieldJSON, 0, len(ids))
	for _, id := range ids {
		out = append(out, byID[id].json())
	}
	simfault.WriteJSON(w, http.StatusOK, map[string]any{"custom_fields": out, "pagination": p})
}

func (s *Server) createField(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Label string `json:"label"`
	}
	if !decodeBody(r, &req) || fieldKey(req.Label) == "" {
		unprocessable(w, "Label can't be blank")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	status := http.StatusCreated
	if s.hasField(fieldKey(req.Label)) {
		status = http.StatusOK
	}
	simfault.WriteJSON(w, status, map[string]any{"custom_field": s.addField(req.Label).json()})
}
