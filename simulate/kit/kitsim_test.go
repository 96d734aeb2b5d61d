package kitsim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func call(t *testing.T, s *Server, method, path, body string, key ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rdr io.Reader
	if body != "" {
		rdr = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rdr)
	k := s.APIKey()
	if len(key) > 0 {
		k = key[0]
	}
	if k != "" {
		req.Header.Set("X-Kit-Api-Key", k)
	}
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

func TestAuth(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	for _, key := range []string{"", "wrong"} {
		rec := call(t, s, "GET", "/v4/subscribers", "", key)
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), `"errors"`) {
			t.Errorf("key %q: %d %s, want 401 with errors", key, rec.Code, rec.Body)
		}
	}
	if st := s.Stats(); st.Unauthorized != 2 || st.Requests["GET /v4/subscribers"] != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestRateLimitAnswersLikeKitAndCountsViolations(t *testing.T) {
	t.Parallel()
	s := New(Options{Limit: 3, Window: 150 * time.Millisecond})
	for i := 0; i < 3; i++ {
		if rec := call(t, s, "GET", "/v4/tags", ""); rec.Code != http.StatusOK {
			t.Fatalf("request %d: %d", i, rec.Code)
		}
	}
	rec := call(t, s, "GET", "/v4/tags", "")
	if rec.Code != http.StatusTooManyRequests || rec.Body.String() != "Retry later" || rec.Header().Get("Retry-After") != "" ||
		!strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
		t.Errorf("over the limit: %d %q %v, want 429 plain \"Retry later\" without Retry-After", rec.Code, rec.Body, rec.Header())
	}
	time.Sleep(160 * time.Millisecond)
	if rec := call(t, s, "GET", "/v4/tags", ""); rec.Code != http.StatusOK {
		t.Errorf("after the window: %d", rec.Code)
	}
	if st := s.Stats(); st.Violations != 1 || st.Throttled != 1 {
		t.Errorf("violations %d throttled %d, want 1 and 1", st.Violations, st.Throttled)
	}
}

func TestSubscriberUpsertLookupAndState(t *testing.T) {
	t.Parallel()
	s := New(Options{Fields: []string{"plan"}})
	rec := call(t, s, "POST", "/v4/subscribers", `{"email_address":"Maria@Example.org","fields":{"plan":"pro","unknown":"x"}}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	var created struct {
		Subscriber subscriberJSON `json:"subscriber"`
	}
	decodeJSON(t, rec, &created)
	if p := created.Subscriber.Fields["plan"]; p == nil || *p != "pro" || len(created.Subscriber.Fields) != 1 || created.Subscriber.State != StateActive {
		t.Errorf("created %+v: known field set, unknown ignored, state active", created.Subscriber)
	}
	if rec := call(t, s, "POST", "/v4/subscribers", `{"email_address":"maria@example.org","first_name":"Maria","state":"inactive"}`); rec.Code != http.StatusOK {
		t.Errorf("upsert of a known email: %d, want 200", rec.Code)
	}
	id := itoa(created.Subscriber.ID)
	if rec := call(t, s, "POST", "/v4/subscribers/"+id+"/unsubscribe", ""); rec.Code != http.StatusNoContent {
		t.Errorf("unsubscribe: %d", rec.Code)
	}
	var list struct {
		Subscribers []subscriberJSON `json:"subscribers"`
	}
	decodeJSON(t, call(t, s, "GET", "/v4/subscribers?email_address=MARIA@example.org", ""), &list)
	if len(list.Subscribers) != 0 {
		t.Errorf("default status filter is active: found %+v", list.Subscribers)
	}
	decodeJSON(t, call(t, s, "GET", "/v4/subscribers?email_address=MARIA@example.org&status=all", ""), &list)
	if len(list.Subscribers) != 1 || list.Subscribers[0].State != StateCancelled || *list.Subscribers[0].FirstName != "Maria" {
		t.Errorf("status=all: %+v, want the cancelled subscriber (upsert never changes state)", list.Subscribers)
	}
	if rec := call(t, s, "PUT", "/v4/subscribers/"+id, `{"fields":{"plan":""}}`); rec.Code != http.StatusUnprocessableEntity {
		t.Errorf("PUT without email_address: %d, want 422", rec.Code)
	}
	if rec := call(t, s, "PUT", "/v4/subscribers/"+id, `{"email_address":"maria@example.org","fields":{"plan":""}}`); rec.Code != http.StatusOK {
		t.Errorf("update: %d", rec.Code)
	}
	if sub, _ := s.Subscriber("maria@example.org"); len(sub.Fields) != 0 {
		t.Errorf("an empty value clears the field: %+v", sub.Fields)
	}
	if rec := call(t, s, "GET", "/v4/subscribers/999999", ""); rec.Code != http.StatusNotFound {
		t.Errorf("unknown id: %d", rec.Code)
	}
	if rec := call(t, s, "POST", "/v4/subscribers", `{"email_address":"nope"}`); rec.Code != http.StatusUnprocessableEntity {
		t.Errorf("invalid email: %d", rec.Code)
	}
}

func TestTaggingCountsDuplicates(t *testing.T) {
	t.Parallel()
	s := New(Options{Tags: []Tag{{ID: 7, Name: "customer"}}})
	sub, err := s.AddSubscriber("a@example.org", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := "/v4/tags/7/subscribers/" + itoa(sub.ID)
	for i, want := range []int{http.StatusCreated, http.StatusOK} {
		if rec := call(t, s, "POST", path, "{}"); rec.Code != want {
			t.Errorf("tag #%d: %d, want %d", i+1, rec.Code, want)
		}
	}
	var tags struct {
		Tags []tagJSON `json:"tags"`
	}
	decodeJSON(t, call(t, s, "GET", "/v4/subscribers/"+itoa(sub.ID)+"/tags", ""), &tags)
	if len(tags.Tags) != 1 || tags.Tags[0].ID != 7 || tags.Tags[0].TaggedAt == "" {
		t.Errorf("tags %+v", tags.Tags)
	}
	if rec := call(t, s, "DELETE", path, ""); rec.Code != http.StatusNoContent {
		t.Errorf("untag: %d", rec.Code)
	}
	if rec := call(t, s, "POST", "/v4/tags/8/subscribers/"+itoa(sub.ID), "{}"); rec.Code != http.StatusNotFound {
		t.Errorf("unknown tag: %d", rec.Code)
	}
	if rec := call(t, s, "POST", "/v4/tags/7/subscribers", `{"email_address":"A@example.org"}`); rec.Code != http.StatusCreated {
		t.Errorf("tag by email: %d", rec.Code)
	}
	if st := s.Stats(); st.DuplicateTags != 1 || st.Writes != 5 {
		t.Errorf("duplicate tags %d writes %d, want 1 and 5", st.DuplicateTags, st.Writes)
	}
}

func TestCursorPagination(t *testing.T) {
	t.Parallel()
	s := New(Options{})
	for _, e := range []string{"a", "b", "c", "d", "e"} {
		if _, err := s.AddSubscriber(e+"@example.org", "", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	after := ""
	for pages := 0; pages < 5; pages++ {
		var body struct {
			Subscribers []subscriberJSON `json:"subscribers"`
			Pagination  pagination       `json:"pagination"`
		}
		decodeJSON(t, call(t, s, "GET", "/v4/subscribers?per_page=2&after="+after, ""), &body)
		for _, sub := range body.Subscribers {
			seen = append(seen, sub.EmailAddress)
		}
		if !body.Pagination.HasNext {
			break
		}
		after = *body.Pagination.EndCursor
	}
	if strings.Join(seen, ",") != "a@example.org,b@example.org,c@example.org,d@example.org,e@example.org" {
		t.Errorf("pages gave %v", seen)
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	s := New(Options{Tags: []Tag{{ID: 7, Name: "customer"}}})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	sub, _ := s.AddSubscriber("a@example.org", "", nil, nil)
	get := func(path string) (int, error) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("X-Kit-Api-Key", s.APIKey())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	s.Storm(time.Hour)
	if code, _ := get("/v4/tags"); code != http.StatusTooManyRequests {
		t.Errorf("storm: %d", code)
	}
	s.Storm(0)
	// The admin endpoint switches faults at run time.
	resp, err := http.Post(srv.URL+"/_sim/faults?errors=1", "", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("admin: %v %v", err, resp)
	}
	if code, _ := get("/v4/tags"); code < 500 {
		t.Errorf("errors=1: %d", code)
	}
	s.SetFaults(Faults{Drop: 1, DropAfterApply: true})
	req, _ := http.NewRequest("POST", srv.URL+"/v4/tags/7/subscribers/"+itoa(sub.ID), strings.NewReader("{}"))
	req.Header.Set("X-Kit-Api-Key", s.APIKey())
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Error("a dropped connection must not answer")
	}
	if got, _ := s.Subscriber("a@example.org"); len(got.Tags) != 1 {
		t.Errorf("drop after apply: the tag must be applied, got %v", got.Tags)
	}
	s.SetFaults(Faults{Slow: 1, Delay: 30 * time.Millisecond})
	start := time.Now()
	if code, _ := get("/v4/tags"); code != http.StatusOK || time.Since(start) < 30*time.Millisecond {
		t.Errorf("slow: %d after %v", code, time.Since(start))
	}
	var st Stats
	resp, err = http.Get(srv.URL + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Violations != 0 || st.Injected != 3 || st.Throttled != 1 {
		t.Errorf("stats %+v: injected faults are not violations", st)
	}
	if err := (Faults{Errors: 2}).Validate(); err == nil {
		t.Error("a fraction above 1 must be refused")
	}
}

// hookSink receives webhook deliveries.
type hookSink struct {
	mu     sync.Mutex
	bodies [][]byte
	sigs   []string
	fail   int // answer 500 to this many deliveries first
	got    chan struct{}
}

func (h *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.bodies = append(h.bodies, b)
	h.sigs = append(h.sigs, r.Header.Get("X-Kit-Signature"))
	fail := h.fail > 0
	h.fail--
	h.mu.Unlock()
	if fail {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	h.got <- struct{}{}
}

func TestWebhooksAreSignedBatchedAndRetried(t *testing.T) {
	t.Parallel()
	hs := &hookSink{fail: 1, got: make(chan struct{}, 10)}
	recv := httptest.NewServer(hs)
	defer recv.Close()
	s := New(Options{WebhookURL: recv.URL, WebhookSecret: "whsec_kit", WebhookRetries: []time.Duration{10 * time.Millisecond}, WebhookBatch: 20 * time.Millisecond, Tags: []Tag{{ID: 7, Name: "customer"}}})
	defer s.Close()
	if _, err := s.AddSubscriber("a@example.org", "Ana", []int64{7}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddSubscriber("b@example.org", "Ben", nil, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // subscriber.created (after one failed attempt) and the tag event
		select {
		case <-hs.got:
		case <-time.After(5 * time.Second):
			t.Fatal("no webhook delivery")
		}
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if len(hs.bodies) != 3 {
		t.Fatalf("%d attempts, want 3 (one failed and retried)", len(hs.bodies))
	}
	byType := map[string]Delivery{}
	for i, b := range hs.bodies {
		var d Delivery
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		sec, err := strconv.ParseInt(strings.TrimPrefix(strings.Split(hs.sigs[i], ",")[0], "t="), 10, 64)
		if err != nil {
			t.Fatalf("signature %q: %v", hs.sigs[i], err)
		}
		if want := Sign("whsec_kit", time.Unix(sec, 0), b); hs.sigs[i] != want {
			t.Errorf("signature %q, want %q", hs.sigs[i], want)
		}
		byType[d.Events[0].Type] = d
	}
	if !bytes.Equal(hs.bodies[0], hs.bodies[1]) && !bytes.Equal(hs.bodies[0], hs.bodies[2]) {
		t.Error("a retry must resend the same delivery")
	}
	created := byType[EventSubscriberCreated]
	if len(created.Events) != 2 || created.DeliveryID == 0 {
		t.Fatalf("created delivery %+v, want both subscribers in one delivery", created)
	}
	ev := created.Events[0]
	sub, _ := ev.Data["subscriber"].(map[string]any)
	if len(ev.ID) != 36 || ev.Created == "" || sub["email_address"] != "a@example.org" || sub["state"] != StateActive {
		t.Errorf("event %+v", ev)
	}
	if _, ok := byType[EventTagAdd].Events[0].Data["tag"]; !ok {
		t.Errorf("tag event without tag: %+v", byType[EventTagAdd])
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
