package ingest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/schemas"
	"github.com/launchready/launchready/simulate/stripe"
)

func TestParseStripeEvent(t *testing.T) {
	t.Parallel()
	created := time.Unix(1775038500, 0).UTC()
	p := stripe.Params{CustomerID: "cus_ABC", Created: created}
	cases := []struct {
		name       string
		body       string
		wantObject string
		wantErr    error
	}{
		{"invoice names its customer", string(stripe.InvoicePaid(p).Body), "cus_ABC", nil},
		{"customer event is keyed by the customer itself", string(stripe.CustomerUpdated(p).Body), "cus_ABC", nil},
		{"dispute names no customer", string(stripe.ChargeDisputeCreated(p).Body), "", nil},
		{"expanded customer", `{"id":"evt_1","type":"x.y","created":1,"data":{"object":{"customer":{"id":"cus_X","object":"customer"}}}}`, "cus_X", nil},
		{"null customer", `{"id":"evt_1","type":"x.y","created":1,"data":{"object":{"customer":null}}}`, "", nil},
		{"missing id", `{"type":"x.y","created":1}`, "", errMissingID},
		{"id with a space", `{"id":"evt 1","type":"x.y","created":1}`, "", errMissingID},
		{"missing type", `{"id":"evt_1","created":1}`, "", errMissingType},
		{"missing created", `{"id":"evt_1","type":"x.y"}`, "", errMissingTime},
		{"not JSON", `{"id":`, "", errBadJSON},
		{"an array", `[1,2]`, "", errBadJSON},
		{"trailing data", `{"id":"evt_1","type":"x.y","created":1} {}`, "", errBadJSON},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ev, err := parseStripeEvent([]byte(c.body))
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if err != nil {
				return
			}
			if ev.ObjectID != c.wantObject || ev.Provider != schemas.ProviderStripe || string(ev.Body) != c.body {
				t.Fatalf("got object %q provider %q (body kept: %v), want object %q", ev.ObjectID, ev.Provider, string(ev.Body) == c.body, c.wantObject)
			}
		})
	}
	e := stripe.SubscriptionUpdated(p)
	ev, err := parseStripeEvent(e.Body)
	if err != nil || ev.EventID != e.ID || ev.Type != "customer.subscription.updated" || !ev.ProviderTime.Equal(created) {
		t.Fatalf("subscription event: %+v, %v", ev, err)
	}
}

const kitDeliveryBody = `{
  "delivery_id": 770011,
  "events": [
    {"id": "3f1c2a9e-0b7d-4c55-9e21-5a6b7c8d9e01", "type": "subscriber.created", "created": "2026-03-02T10:15:00Z",
     "data": {"subscriber": {"id": 4455667, "first_name": "Maria", "email_address": "Maria.Lopez@example.org", "state": "active", "created_at": "2026-03-02T10:15:00Z", "fields": {"plan": "pro"}}}},
    {"id": "8d0e4b12-77aa-4f1e-b3c9-0c1d2e3f4a5b", "type": "subscriber.created", "created": "2026-03-02T10:15:01.250Z",
     "data": {"subscriber": {"id": 4455668, "first_name": "Li", "email_address": "li@example.org", "state": "active", "created_at": "2026-03-02T10:15:01Z", "fields": {}}}}
  ]
}`

func TestParseKitDelivery(t *testing.T) {
	t.Parallel()
	evs, err := parseKitDelivery([]byte(kitDeliveryBody))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2", len(evs))
	}
	if evs[0].EventID != "3f1c2a9e-0b7d-4c55-9e21-5a6b7c8d9e01" || evs[0].ObjectID != "4455667" || evs[1].ObjectID != "4455668" {
		t.Fatalf("ids: %q/%q, %q", evs[0].EventID, evs[0].ObjectID, evs[1].ObjectID)
	}
	if !evs[1].ProviderTime.Equal(time.Date(2026, 3, 2, 10, 15, 1, 250e6, time.UTC)) {
		t.Fatalf("created = %v", evs[1].ProviderTime)
	}
	if !strings.Contains(string(evs[1].Body), `"li@example.org"`) || strings.Contains(string(evs[1].Body), "Maria") {
		t.Fatal("each record must carry its own event only")
	}

	many := `{"delivery_id":1,"events":[` + strings.TrimSuffix(strings.Repeat(`{"id":"e","type":"subscriber.created","created":"2026-03-02T10:15:00Z"},`, 101), ",") + `]}`
	cases := []struct {
		name string
		body string
		want error
	}{
		{"no events", `{"delivery_id":1,"events":[]}`, errNoEvents},
		{"events missing", `{"delivery_id":1}`, errNoEvents},
		{"101 events", many, errTooManyEvent},
		{"event without id", `{"events":[{"type":"subscriber.created","created":"2026-03-02T10:15:00Z"}]}`, errMissingID},
		{"event without type", `{"events":[{"id":"a","created":"2026-03-02T10:15:00Z"}]}`, errMissingType},
		{"event with a bad time", `{"events":[{"id":"a","type":"t","created":"yesterday"}]}`, errMissingTime},
		{"event not an object", `{"events":[42]}`, errBadJSON},
		{"events not a list", `{"events":{}}`, errBadJSON},
	}
	for _, c := range cases {
		if _, err := parseKitDelivery([]byte(c.body)); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestParseKitLegacy(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC)
	sub := `{"subscriber":{"id":4455667,"first_name":"Maria","email_address":"Maria.Lopez@example.org","state":"active","created_at":"2026-03-02T10:15:00.123Z","fields":{"plan":"pro"}}}`
	reordered := `{ "subscriber": {"state":"active", "id":4455667, "first_name":"Maria", "email_address":"Maria.Lopez@example.org", "created_at":"2026-03-02T10:15:00.123Z", "fields":{"plan":"pro"}} }`
	a, err := parseKitLegacy([]byte(sub), "", now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseKitLegacy([]byte(reordered), "subscriber.subscriber_activate", now)
	if err != nil {
		t.Fatal(err)
	}
	if a.EventID != b.EventID || !strings.HasPrefix(a.EventID, "legacy_") {
		t.Fatalf("same body, different keys: %q %q", a.EventID, b.EventID)
	}
	if a.Type != "legacy.subscriber" || b.Type != "subscriber.subscriber_activate" || a.ObjectID != "4455667" || !a.ProviderTime.Equal(now) {
		t.Fatalf("a=%+v b.Type=%q", a, b.Type)
	}
	purchase := `{"id":91,"transaction_id":"txn-2026-0042","status":"paid","email_address":"maria.lopez@example.org","transaction_time":"2026-03-02T10:14:58Z","total":49.0}`
	p, err := parseKitLegacy([]byte(purchase), "Bad Hint!", now)
	if err != nil {
		t.Fatal(err)
	}
	if p.Type != "legacy.purchase" || !p.ProviderTime.Equal(time.Date(2026, 3, 2, 10, 14, 58, 0, time.UTC)) {
		t.Fatalf("purchase: %+v", p)
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{"a":`} {
		if _, err := parseKitLegacy([]byte(bad), "", now); !errors.Is(err, errBadJSON) {
			t.Errorf("legacy %q: err = %v", bad, err)
		}
	}
	if isKitDelivery([]byte(sub)) || !isKitDelivery([]byte(kitDeliveryBody)) {
		t.Fatal("isKitDelivery misclassifies")
	}
}

func TestParseCirclePush(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC)
	body := `{"source":"circle","event":"member.tag_added","occurred_at":"2026-03-02T10:25:00Z","community_member_id":31337,"email":"maria.lopez@example.org","member_tag_id":77}`
	ev, err := parseCirclePush([]byte(body), now)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != "member.tag_added" || ev.ObjectID != "31337" || !strings.HasPrefix(ev.EventID, "push_") || !ev.ProviderTime.Equal(time.Date(2026, 3, 2, 10, 25, 0, 0, time.UTC)) {
		t.Fatalf("push: %+v", ev)
	}
	again, _ := parseCirclePush([]byte(" "+body+"\n"), now)
	if again.EventID != ev.EventID {
		t.Fatal("a re-sent push must get the same key")
	}
	withID, err := parseCirclePush([]byte(`{"id":"wf-run-9","event":"member.created"}`), now)
	if err != nil || withID.EventID != "wf-run-9" || !withID.ProviderTime.Equal(now) {
		t.Fatalf("push with id: %+v %v", withID, err)
	}
	cases := map[string]error{
		`{"occurred_at":"2026-03-02T10:25:00Z"}`:            errMissingType,
		`{"event":"member.created","occurred_at":"soon"}`:   errMissingTime,
		`{"event":"member.created","id":{"nested":true}}`:   errMissingID,
		`["member.created"]`:                                errBadJSON,
		`{"event":"member.created","community_member_id":1`: errBadJSON,
	}
	for b, want := range cases {
		if _, err := parseCirclePush([]byte(b), now); !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", b, err, want)
		}
	}
}

func TestMemberStateKey(t *testing.T) {
	t.Parallel()
	base := `{"id":31337,"user_id":90210,"email":"maria.lopez@example.org","name":"Maria Lopez","active":true,"updated_at":"2026-03-02T10:21:00.000Z","last_seen_at":"2026-03-05T18:00:00.000Z","posts_count":3,"member_tags":[{"id":77,"name":"pro-member"},{"id":12,"name":"beta"}],"flattened_profile_fields":{}}`
	id, updated, key, err := memberState([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if id != "31337" || !updated.Equal(time.Date(2026, 3, 2, 10, 21, 0, 0, time.UTC)) || len(key) != 64 {
		t.Fatalf("id %q updated %v key %q", id, updated, key)
	}
	same := []string{
		strings.Replace(base, `"posts_count":3`, `"posts_count":4`, 1),                                                                                 // untracked field
		strings.Replace(base, `"last_seen_at":"2026-03-05T18:00:00.000Z"`, `"last_seen_at":"2026-03-06T18:00:00.000Z"`, 1),                             // untracked field
		strings.Replace(base, `[{"id":77,"name":"pro-member"},{"id":12,"name":"beta"}]`, `[{"id":12,"name":"beta"},{"id":77,"name":"pro-member"}]`, 1), // tag order
	}
	for _, s := range same {
		if _, _, k, _ := memberState([]byte(s)); k != key {
			t.Errorf("key changed for an irrelevant difference:\n%s", s)
		}
	}
	different := []string{
		strings.Replace(base, `{"id":12,"name":"beta"}`, `{"id":13,"name":"alpha"}`, 1),  // tag change without updated_at
		strings.Replace(base, `"active":true`, `"active":false`, 1),                      // deactivated
		strings.Replace(base, `2026-03-02T10:21:00.000Z`, `2026-03-02T10:22:00.000Z`, 1), // updated_at
		strings.Replace(base, `"maria.lopez@example.org"`, `"maria@example.org"`, 1),     // email
		strings.Replace(base, `"flattened_profile_fields":{}`, `"flattened_profile_fields":{"plan":"pro"}`, 1),
	}
	for _, s := range different {
		if _, _, k, _ := memberState([]byte(s)); k == key {
			t.Errorf("key unchanged for a tracked difference:\n%s", s)
		}
	}
	for _, bad := range []string{`{"updated_at":"2026-03-02T10:21:00Z"}`, `{"id":1,"updated_at":"x"}`, `[]`} {
		if _, _, _, err := memberState([]byte(bad)); err == nil {
			t.Errorf("memberState(%s) accepted", bad)
		}
	}
}
