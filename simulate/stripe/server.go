package stripe

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Server answers GET /v1/events and GET /v1/events/{id} like Stripe: newest
// first, `limit` 1–100 (default 10), `starting_after` / `ending_before`
// cursors, `created` and `created[gt|gte|lt|lte]`, `type` (with a trailing
// `*` wildcard) and `types[]` filters, and a secret key checked as a Bearer
// token or as the Basic-auth user name. Safe for concurrent use.
type Server struct {
	apiKey string

	mu     sync.Mutex
	events []Event // newest first; ties keep the later-added first

	requests atomic.Int64
	// Fail, when set, is consulted before each request; a non-zero status is
	// answered as a Stripe api_error (for retry tests).
	Fail func(r *http.Request) int
}

// NewServer returns a Server that accepts apiKey and lists events.
func NewServer(apiKey string, events ...Event) *Server {
	s := &Server{apiKey: apiKey}
	s.Add(events...)
	return s
}

// Add stores events.
func (s *Server) Add(events ...Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(events) - 1; i >= 0; i-- {
		s.events = append([]Event{events[i]}, s.events...)
	}
	sort.SliceStable(s.events, func(i, j int) bool { return s.events[i].Created.After(s.events[j].Created) })
}

// Requests returns how many requests the server answered.
func (s *Server) Requests() int64 { return s.requests.Load() }

type apiError struct {
	Type    string `json:"type"`
	Code    string `json:"code,omitempty"`
	Param   string `json:"param,omitempty"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, e apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]apiError{"error": e})
}

func (s *Server) authorized(r *http.Request) (ok, given bool) {
	key := ""
	if u, _, has := r.BasicAuth(); has {
		key = u
	} else if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		key = strings.TrimPrefix(h, "Bearer ")
	}
	if key == "" {
		return false, false
	}
	return subtle.ConstantTimeCompare([]byte(key), []byte(s.apiKey)) == 1, true
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	w.Header().Set("Request-Id", "req_"+NewID("sim")[4:18])
	if s.Fail != nil {
		if code := s.Fail(r); code != 0 {
			writeError(w, code, apiError{Type: "api_error", Message: "An unexpected error occurred."})
			return
		}
	}
	if ok, given := s.authorized(r); !ok {
		msg := "You did not provide an API key. Provide it in the Authorization header as a Bearer token."
		if given {
			msg = "Invalid API Key provided."
		}
		writeError(w, http.StatusUnauthorized, apiError{Type: "invalid_request_error", Message: msg})
		return
	}
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, apiError{Type: "invalid_request_error", Message: "Unrecognized request URL (" + r.Method + ")."})
		return
	}
	switch {
	case r.URL.Path == "/v1/events":
		s.list(w, r)
	case strings.HasPrefix(r.URL.Path, "/v1/events/"):
		s.retrieve(w, strings.TrimPrefix(r.URL.Path, "/v1/events/"))
	default:
		writeError(w, http.StatusNotFound, apiError{Type: "invalid_request_error", Message: "Unrecognized request URL."})
	}
}

func (s *Server) retrieve(w http.ResponseWriter, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.ID == id {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(e.Body)
			return
		}
	}
	writeError(w, http.StatusNotFound, apiError{Type: "invalid_request_error", Code: "resource_missing", Param: "id", Message: "No such event: '" + sanitize(id) + "'"})
}

// sanitize keeps an id echoed in an error to id characters.
func sanitize(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return -1
	}, s)
}

type filter struct {
	gt, gte, lt, lte *int64
	types            []string
}

func (f filter) match(e Event) bool {
	c := e.Created.Unix()
	if f.gt != nil && c <= *f.gt || f.gte != nil && c < *f.gte || f.lt != nil && c >= *f.lt || f.lte != nil && c > *f.lte {
		return false
	}
	if len(f.types) == 0 {
		return true
	}
	for _, t := range f.types {
		if t == e.Type || strings.HasSuffix(t, "*") && strings.HasPrefix(e.Type, strings.TrimSuffix(t, "*")) {
			return true
		}
	}
	return false
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bad := func(param, msg string) {
		writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Param: param, Message: msg})
	}
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			bad("limit", "Invalid limit: must be an integer between 1 and 100.")
			return
		}
		limit = n
	}
	var f filter
	for name, dst := range map[string]**int64{"created[gt]": &f.gt, "created[gte]": &f.gte, "created[lt]": &f.lt, "created[lte]": &f.lte, "created": &f.gte} {
		v := q.Get(name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			bad(name, "Invalid integer: "+sanitize(v))
			return
		}
		*dst = &n
		if name == "created" {
			f.lte = &n
		}
	}
	if t := q.Get("type"); t != "" {
		f.types = append(f.types, t)
	}
	f.types = append(f.types, q["types[]"]...)
	if len(q["types[]"]) > 20 {
		bad("types", "You may pass at most 20 types.")
		return
	}
	after, before := q.Get("starting_after"), q.Get("ending_before")
	if after != "" && before != "" {
		bad("starting_after", "You may only specify one of these parameters: ending_before, starting_after.")
		return
	}

	s.mu.Lock()
	var matched []Event
	for _, e := range s.events {
		if f.match(e) {
			matched = append(matched, e)
		}
	}
	s.mu.Unlock()

	start, end := 0, len(matched)
	if after != "" || before != "" {
		cursor := after + before
		at := -1
		for i, e := range matched {
			if e.ID == cursor {
				at = i
				break
			}
		}
		if at < 0 {
			param := "starting_after"
			if before != "" {
				param = "ending_before"
			}
			writeError(w, http.StatusBadRequest, apiError{Type: "invalid_request_error", Code: "resource_missing", Param: param, Message: "No such event: '" + sanitize(cursor) + "'"})
			return
		}
		if after != "" {
			start = at + 1
		} else {
			end = at
			start = max(0, end-limit)
		}
	}
	page := matched[start:min(end, start+limit)]
	hasMore := start+len(page) < end
	if before != "" {
		hasMore = start > 0
	}
	data := make([]json.RawMessage, len(page))
	for i, e := range page {
		data[i] = e.Body
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "url": "/v1/events", "has_more": hasMore, "data": data})
}
