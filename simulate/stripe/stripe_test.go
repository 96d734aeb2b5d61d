package stripe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSignMatchesStripeScheme(t *testing.T) {
	t.Parallel()
	body := []byte(`{"id":"evt_1"}`)
	at := time.Unix(1772446500, 0)
	h := Sign("whsec_test", body, at)
	m := hmac.New(sha256.New, []byte("whsec_test"))
	m.Write([]byte("1772446500." + string(body)))
	want := "t=1772446500,v1=" + hex.EncodeToString(m.Sum(nil))
	if h != want {
		t.Fatalf("Sign = %q, want %q", h, want)
	}
	many := SignMany([]string{"a_secret", "whsec_test"}, body, at)
	if !strings.HasSuffix(many, strings.TrimPrefix(want, "t=1772446500")) || strings.Count(many, "v1=") != 2 {
		t.Fatalf("SignMany = %q", many)
	}
}

func decode(t *testing.T, e Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(e.Body, &m); err != nil {
		t.Fatalf("%s: body is not JSON: %v", e.Type, err)
	}
	return m
}

func path(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		if i, err := strconv.Atoi(k); err == nil {
			arr, _ := cur.([]any)
			if i >= len(arr) {
				return nil
			}
			cur = arr[i]
			continue
		}
		mm, _ := cur.(map[string]any)
		cur = mm[k]
	}
	return cur
}

func TestBuildersFillTheFieldsTheReconcilerReads(t *testing.T) {
	t.Parallel()
	at := time.Unix(1775038500, 0)
	p := Params{CustomerID: "cus_A", Email: "A@Example.org", UserID: "user_1", SubscriptionID: "sub_A", PriceID: "price_X", ProductID: "prod_X", ChargeID: "ch_A", Created: at, PreviousEmail: "old@example.org", Status: "past_due", PreviousStatus: "active"}
	cases := []struct {
		typ   string
		field []string
		want  any
	}{
		{"checkout.session.completed", []string{"data", "object", "customer_details", "email"}, "A@Example.org"},
		{"checkout.session.completed", []string{"data", "object", "client_reference_id"}, "user_1"},
		{"invoice.paid", []string{"data", "object", "parent", "subscription_details", "subscription"}, "sub_A"},
		{"invoice.paid", []string{"data", "object", "status"}, "paid"},
		{"invoice.payment_failed", []string{"data", "object", "status"}, "open"},
		{"charge.refunded", []string{"data", "previous_attributes", "refunded"}, false},
		{"charge.refunded", []string{"data", "object", "billing_details", "email"}, "A@Example.org"},
		{"charge.dispute.created", []string{"data", "object", "charge"}, "ch_A"},
		{"customer.subscription.updated", []string{"data", "object", "items", "data", "0", "price", "id"}, "price_X"},
		{"customer.subscription.updated", []string{"data", "previous_attributes", "status"}, "active"},
		{"customer.subscription.updated", []string{"data", "object", "status"}, "past_due"},
		{"customer.subscription.deleted", []string{"data", "object", "status"}, "canceled"},
		{"customer.updated", []string{"data", "previous_attributes", "email"}, "old@example.org"},
		{"customer.updated", []string{"data", "object", "metadata", "user_id"}, "user_1"},
	}
	for _, c := range cases {
		t.Run(c.typ+"/"+strings.Join(c.field, "."), func(t *testing.T) {
			t.Parallel()
			e := Builders[c.typ](p)
			m := decode(t, e)
			if m["type"] != c.typ || m["id"] != e.ID || m["object"] != "event" || m["api_version"] != DefaultAPIVersion {
				t.Fatalf("envelope wrong: type=%v id=%v object=%v api=%v", m["type"], m["id"], m["object"], m["api_version"])
			}
			if got := path(m, c.field...); got != c.want {
				t.Fatalf("%s = %v, want %v", strings.Join(c.field, "."), got, c.want)
			}
			if int64(m["created"].(float64)) != at.Unix() {
				t.Fatalf("created = %v", m["created"])
			}
		})
	}
}

func TestBasilShapesMoveSubscriptionFields(t *testing.T) {
	t.Parallel()
	end := time.Unix(1777630500, 0)
	basil := decode(t, SubscriptionUpdated(Params{PeriodEnd: end}))
	if path(basil, "data", "object", "items", "data", "0", "current_period_end") != float64(end.Unix()) || path(basil, "data", "object", "current_period_end") != nil {
		t.Fatal("basil subscription must carry the period on its items only")
	}
	old := decode(t, SubscriptionUpdated(Params{PeriodEnd: end, APIVersion: "2024-06-20"}))
	if path(old, "data", "object", "current_period_end") != float64(end.Unix()) {
		t.Fatal("pre-basil subscription must carry the period at top level")
	}
	inv := decode(t, InvoicePaid(Params{SubscriptionID: "sub_Z", APIVersion: "2024-06-20"}))
	if path(inv, "data", "object", "subscription") != "sub_Z" {
		t.Fatal("pre-basil invoice must carry subscription at top level")
	}
	if e := (InvoicePaid(Params{CustomerID: "cus_Q"})); e.Customer() != "cus_Q" {
		t.Fatalf("Customer() = %q", e.Customer())
	}
	if e := (CustomerUpdated(Params{CustomerID: "cus_R"})); e.Customer() != "cus_R" {
		t.Fatalf("Customer() of a customer event = %q", e.Customer())
	}
}

type listPage struct {
	HasMore bool              `json:"has_more"`
	Data    []json.RawMessage `json:"data"`
}

func get(t *testing.T, url, key string) (int, listPage) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p listPage
	_ = json.NewDecoder(resp.Body).Decode(&p)
	return resp.StatusCode, p
}

func TestServerPaginatesNewestFirstWithFilters(t *testing.T) {
	t.Parallel()
	base := time.Unix(1772000000, 0)
	var evs []Event
	for i := range 25 {
		evs = append(evs, InvoicePaid(Params{Created: base.Add(time.Duration(i) * time.Minute)}))
	}
	srv := NewServer("sk_test_sim")
	srv.Add(evs...)
	ts := httptest.NewServer(srv)
	defer ts.Close()

	if code, _ := get(t, ts.URL+"/v1/events", ""); code != http.StatusUnauthorized {
		t.Fatalf("no key: %d", code)
	}
	if code, _ := get(t, ts.URL+"/v1/events", "sk_test_wrong"); code != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d", code)
	}
	if code, _ := get(t, ts.URL+"/v1/events?limit=101", "sk_test_sim"); code != http.StatusBadRequest {
		t.Fatalf("limit 101: %d", code)
	}

	// created[gte] keeps the newest 20; pages of 8 walk them newest first.
	since := base.Add(5 * time.Minute).Unix()
	var ids []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		u := fmt.Sprintf("%s/v1/events?limit=8&created[gte]=%d", ts.URL, since)
		if after != "" {
			u += "&starting_after=" + after
		}
		code, p := get(t, u, "sk_test_sim")
		if code != http.StatusOK {
			t.Fatalf("page %d: %d", pages, code)
		}
		for _, d := range p.Data {
			var e struct{ ID string }
			_ = json.Unmarshal(d, &e)
			ids = append(ids, e.ID)
			after = e.ID
		}
		if !p.HasMore {
			break
		}
	}
	if len(ids) != 20 {
		t.Fatalf("got %d events, want 20", len(ids))
	}
	for i, id := range ids {
		if want := evs[24-i].ID; id != want {
			t.Fatalf("event %d = %s, want %s (newest first)", i, id, want)
		}
	}
	if code, _ := get(t, ts.URL+"/v1/events?starting_after=evt_unknown", "sk_test_sim"); code != http.StatusBadRequest {
		t.Fatalf("unknown cursor: %d", code)
	}
	code, p := get(t, ts.URL+"/v1/events?type=invoice.*&limit=100", "sk_test_sim")
	if code != http.StatusOK || len(p.Data) != 25 || p.HasMore {
		t.Fatalf("type wildcard: %d, %d events, has_more %v", code, len(p.Data), p.HasMore)
	}
	if code, p := get(t, ts.URL+"/v1/events?type=charge.refunded", "sk_test_sim"); code != http.StatusOK || len(p.Data) != 0 {
		t.Fatalf("type filter: %d, %d events", code, len(p.Data))
	}
	if srv.Requests() < 8 {
		t.Fatalf("requests = %d", srv.Requests())
	}
}
