package reconcile

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/launchready/launchready/schemas"
)

func payload(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "payloads", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// kitEvent extracts the first event of a Kit delivery, as ingest does.
func kitEventBody(t testing.TB, name string) []byte {
	var d struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(payload(t, name), &d); err != nil || len(d.Events) == 0 {
		t.Fatalf("%s: %v", name, err)
	}
	return d.Events[0]
}

func links(f *Fact) []string {
	var out []string
	for _, l := range f.Links {
		out = append(out, string(l))
	}
	sort.Strings(out)
	return out
}

func TestDecodeProviderPayloads(t *testing.T) {
	t.Parallel()
	raw := func(provider, id, typ string, body []byte) *schemas.RawEvent {
		return &schemas.RawEvent{V: 1, Provider: provider, EventID: id, Type: typ, Body: body, ReceivedAt: time.Unix(1772446600, 0)}
	}
	cases := []struct {
		name    string
		decode  func() (*Fact, error)
		links   []string
		email   string
		billing *Billing
		observe *Observe
		prev    string
	}{
		{name: "stripe checkout.session.completed",
			decode: func() (*Fact, error) {
				return DecodeStripe(raw("stripe", "evt_1TESTcheckout0001", "checkout.session.completed", payload(t, "stripe_checkout.session.completed.json")))
			},
			links: []string{"email:maria.lopez@example.org", "stripe:cus_TESTcustomer01", "user:user_8842"}, email: "maria.lopez@example.org",
			billing: &Billing{Object: ObjCheckout, ID: "cs_test_a1ExampleSession", Sub: "sub_TESTsubscription01", Status: "complete", Paid: true, Mode: "subscription", PlanHint: "pro"}},
		{name: "stripe customer.subscription.updated",
			decode: func() (*Fact, error) {
				return DecodeStripe(raw("stripe", "evt_1TESTsubupd0001", "customer.subscription.updated", payload(t, "stripe_customer.subscription.updated.json")))
			},
			links:   []string{"stripe:cus_TESTcustomer01"},
			billing: &Billing{Object: ObjSubscription, ID: "sub_TESTsubscription01", Sub: "sub_TESTsubscription01", Status: "past_due", Price: "price_TESTpro", Product: "prod_TESTpro"}},
		{name: "stripe charge.refunded",
			decode: func() (*Fact, error) {
				return DecodeStripe(raw("stripe", "evt_1TESTrefund0001", "charge.refunded", payload(t, "stripe_charge.refunded.json")))
			},
			links: []string{"charge:ch_TESTcharge01", "email:maria.lopez@example.org", "pi:pi_TESTpi01", "stripe:cus_TESTcustomer01"}, email: "maria.lopez@example.org",
			billing: &Billing{Object: ObjCharge, ID: "ch_TESTcharge01", Amount: 4900, Refunded: 4900, FullRefund: true}},
		{name: "kit subscriber.created",
			decode: func() (*Fact, error) {
				return DecodeKit(raw("kit", "3f1c2a9e-0b7d-4c55-9e21-5a6b7c8d9e01", "subscriber.created", kitEventBody(t, "kit_subscriber.created.json")))
			},
			links: []string{"email:maria.lopez@example.org", "kit:4455667"}, email: "maria.lopez@example.org",
			observe: &Observe{System: "kit", Record: "4455667", State: "active"}},
		{name: "kit subscriber.unsubscribed",
			decode: func() (*Fact, error) {
				return DecodeKit(raw("kit", "8d0e4b12-77aa-4f1e-b3c9-0c1d2e3f4a5b", "subscriber.unsubscribed", kitEventBody(t, "kit_subscriber.unsubscribed.json")))
			},
			links: []string{"email:maria.lopez@example.org", "kit:4455667"}, email: "maria.lopez@example.org",
			observe: &Observe{System: "kit", Record: "4455667", State: "cancelled"}},
		{name: "kit legacy subscriber",
			decode: func() (*Fact, error) {
				return DecodeKit(raw("kit", "legacy_1", "legacy.unknown", payload(t, "kit_legacy_subscriber.subscriber_activate.json")))
			},
			links: []string{"email:maria.lopez@example.org", "kit:4455667"}, email: "maria.lopez@example.org",
			observe: &Observe{System: "kit", Record: "4455667", State: "active"}},
		{name: "kit legacy purchase links the email only",
			decode: func() (*Fact, error) {
				return DecodeKit(raw("kit", "legacy_2", "legacy.unknown", payload(t, "kit_legacy_purchase.purchase_create.json")))
			},
			links: []string{"email:maria.lopez@example.org"}},
		{name: "circle member",
			decode: func() (*Fact, error) {
				return DecodeCircle(raw("circle", "poll_1", "member.updated", payload(t, "circle_community_member_search_response.json")))
			},
			links: []string{"circle:31337", "circle_user:90210", "email:maria.lopez@example.org"}, email: "maria.lopez@example.org",
			observe: &Observe{System: "circle", Record: "31337", State: "active", Snapshot: true, Tags: []int64{77}}},
		{name: "circle workflow push",
			decode: func() (*Fact, error) {
				return DecodeCircle(raw("circle", "push_1", "member.tag_added", payload(t, "circle_workflow_push.json")))
			},
			links: []string{"circle:31337", "email:maria.lopez@example.org"}, email: "maria.lopez@example.org",
			observe: &Observe{System: "circle", Record: "31337", Holds: []Holding{{Kind: HoldTag, ID: 77, Present: true}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := tc.decode()
			if err != nil || f == nil {
				t.Fatalf("decode: %v, %v", f, err)
			}
			if got := links(f); !reflect.DeepEqual(got, tc.links) {
				t.Errorf("links %v, want %v", got, tc.links)
			}
			if tc.email != "" && (f.Email == nil || f.Email.Email != tc.email) {
				t.Errorf("email claim %+v, want %s", f.Email, tc.email)
			}
			if !reflect.DeepEqual(f.Billing, tc.billing) {
				t.Errorf("billing %+v, want %+v", f.Billing, tc.billing)
			}
			if !reflect.DeepEqual(f.Observe, tc.observe) {
				t.Errorf("observe %+v, want %+v", f.Observe, tc.observe)
			}
			if f.At.IsZero() || f.Key == "" || f.EventID == "" {
				t.Errorf("fact without time or key: %+v", f)
			}
		})
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{`, `[]`, `{"id": 5}`, `{"data": {"object": {"customer": 7}}}`} {
		r := &schemas.RawEvent{V: 1, Provider: "stripe", EventID: "evt_x", Body: json.RawMessage(body)}
		f, err := DecodeStripe(r)
		if err == nil && f != nil {
			t.Errorf("stripe body %s decoded to %+v", body, f)
		}
	}
}

func TestFactFromChange(t *testing.T) {
	t.Parallel()
	s := DefaultSettings()
	decode := func(js string) *schemas.Change {
		c, err := DecodeChange([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	big := decode(`{"v":1,"op":"u","schema":"public","table":"users","key":{"id":9007199254740993},
		"before":{"id":9007199254740993,"email":"Old@example.org"},"after":{"id":9007199254740993,"email":"New@example.org"},
		"source":{"lsn":"0/16B3748","commit_lsn":"0/16B3790","commit_time":"2026-03-02T10:00:00Z"}}`)
	f := s.FactFromChange(big)
	if f == nil || !reflect.DeepEqual(links(f), []string{"email:new@example.org", "email:old@example.org", "user:9007199254740993"}) ||
		f.PrevEmail != "old@example.org" || f.Email.Rank != RankApp || f.Key != big.DedupKey() {
		t.Fatalf("fact %+v", f)
	}
	toast := decode(`{"v":1,"op":"u","schema":"public","table":"users","key":{"id":5},"after":{"id":5},"unchanged":["email"],
		"source":{"lsn":"0/1","commit_time":"2026-03-02T10:00:00Z"}}`)
	if f := s.FactFromChange(toast); f == nil || f.Email != nil || len(f.Links) != 1 {
		t.Fatalf("an unchanged TOAST email must not clear the email: %+v", f)
	}
	for _, js := range []string{
		`{"v":1,"op":"d","schema":"public","table":"users","key":{"id":5},"before":{"id":5},"source":{"lsn":"0/2"}}`,
		`{"v":1,"op":"c","schema":"public","table":"orders","key":{"id":5},"after":{"id":5},"source":{"lsn":"0/3"}}`,
	} {
		if f := s.FactFromChange(decode(js)); f != nil {
			t.Errorf("%s gave a fact %+v", js, f)
		}
	}
	sess := decode(`{"v":1,"op":"c","schema":"public","table":"chat_sessions","key":{"id":"s1"},"after":{"id":"s1","user_id":5},"source":{"lsn":"0/4"}}`)
	if f := s.FactFromChange(sess); f == nil || !reflect.DeepEqual(links(f), []string{"session:s1", "user:5"}) {
		t.Fatalf("session fact %+v", f)
	}
	// Snapshot rows share an LSN: the key keeps them apart.
	a := decode(`{"v":1,"op":"r","schema":"public","table":"users","key":{"id":1},"after":{"id":1,"email":"a@x.org"},"source":{"lsn":"0/9"}}`)
	b := decode(`{"v":1,"op":"r","schema":"public","table":"users","key":{"id":2},"after":{"id":2,"email":"b@x.org"},"source":{"lsn":"0/9"}}`)
	if fa, fb := s.FactFromChange(a), s.FactFromChange(b); fa.Key == fb.Key {
		t.Fatal("two snapshot rows share a dedup key")
	}
}

func TestSettingsFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"LR_APP_USERS_TABLE": "app.accounts", "LR_APP_USERS_EMAIL_COLUMN": "mail", "LR_APP_SESSIONS_TABLE": "-"}
	s, err := SettingsFrom(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || s.UsersTable != "app.accounts" || s.UsersEmailColumn != "mail" || s.UsersIDColumn != "id" || s.SessionsTable != "" {
		t.Fatalf("%+v %v", s, err)
	}
	if got := s.CDCTopics(); !reflect.DeepEqual(got, []string{"cdc.app.accounts"}) {
		t.Fatalf("topics %v", got)
	}
	env["LR_APP_USERS_TABLE"] = "accounts"
	if _, err := SettingsFrom(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err == nil {
		t.Fatal("a table without schema was accepted")
	}
}
