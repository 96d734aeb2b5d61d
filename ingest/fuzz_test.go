package ingest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/schemas"
	"github.com/launchready/launchready/simulate/stripe"
)

var fuzzNow = time.Unix(1772446500, 0)

// stripeRefundBody is a trimmed event: the fuzzing engine slows to a crawl
// on seeds of several kilobytes, and the full fixtures are covered by the
// parser's table tests.
const stripeRefundBody = `{"id":"evt_1TESTrefund0001","object":"event","api_version":"2025-06-30.basil","created":1773000000,` +
	`"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"charge.refunded",` +
	`"data":{"object":{"id":"ch_TESTcharge01","object":"charge","customer":"cus_TESTcustomer01","amount":4900,` +
	`"amount_refunded":4900,"refunded":true,"billing_details":{"email":"maria.lopez@example.org"}},` +
	`"previous_attributes":{"amount_refunded":0,"refunded":false}}}`

// fuzzVerifier checks a verifier against an independent computation: it
// accepts a header only if one of its v1 values is the HMAC of body under
// one of the secrets, and never panics.
func fuzzVerifier(t *testing.T, secrets []string, header string, body []byte) {
	v := newHMACVerifier(secrets, 300*time.Second)
	err := v.Verify(header, body, fuzzNow)
	if err != nil {
		return
	}
	sh, perr := parseSignedHeader(header)
	if perr != nil {
		t.Fatalf("accepted a header that does not parse: %v", perr)
	}
	if d := fuzzNow.Unix() - sh.unix; d > 300 || d < -300 {
		t.Fatalf("accepted t=%d outside the tolerance", sh.unix)
	}
	for _, s := range secrets {
		if strings.Contains(header, "v1="+stripe.Signature(s, sh.ts, body)) || strings.Contains(strings.ToLower(header), "v1="+stripe.Signature(s, sh.ts, body)) {
			return
		}
	}
	t.Fatalf("accepted a header with no valid v1: %q", header)
}

func FuzzStripeSignature(f *testing.F) {
	body := []byte(stripeRefundBody)
	f.Add(stripe.Sign(stripeSecret, body, fuzzNow), body)
	f.Add(stripe.SignMany([]string{"whsec_x", stripeSecret}, body, fuzzNow)+",v0=00", body)
	f.Add("t=1772446500,v1=", []byte("{}"))
	f.Add("t=,v1=zz,,=", []byte(""))
	f.Add("t=99999999999999999999,v1=00", []byte("{}"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		fuzzVerifier(t, []string{stripeSecret, "whsec_rotated_0001"}, header, body)
	})
}

func FuzzKitSignature(f *testing.F) {
	f.Add(stripe.Sign(kitSecret, []byte(kitDeliveryBody), fuzzNow), []byte(kitDeliveryBody))
	f.Add("t=1772446500, v1="+strings.Repeat("ab", 32), []byte(kitDeliveryBody))
	f.Add("v1=00,t=1772446500", []byte("[]"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		fuzzVerifier(t, []string{kitSecret}, header, body)
	})
}

func FuzzCircleSecret(f *testing.F) {
	f.Add(circleSecret)
	f.Add("")
	f.Add(circleSecret + "\x00")
	f.Fuzz(func(t *testing.T, given string) {
		err := newSecretVerifier([]string{circleSecret}).Verify(given)
		if (err == nil) != (given == circleSecret) {
			t.Fatalf("Verify(%q) = %v", given, err)
		}
	})
}

// storable checks what every parser promises of a record it returns: a
// valid id and type, and a body that encodes into the envelope.
func storable(t *testing.T, ev schemas.RawEvent) {
	t.Helper()
	if !validToken(ev.EventID) || !validToken(ev.Type) {
		t.Fatalf("invalid id %q or type %q accepted", ev.EventID, ev.Type)
	}
	if ev.ObjectID != "" && !validToken(ev.ObjectID) {
		t.Fatalf("invalid object id %q", ev.ObjectID)
	}
	m, err := encodeRaw("lr.raw.x", ev.EventID, &ev)
	if err != nil || !json.Valid(m.Value) {
		t.Fatalf("record does not encode: %v", err)
	}
	var back schemas.RawEvent
	if err := json.Unmarshal(m.Value, &back); err != nil || string(back.Body) != string(bytes.TrimSpace(ev.Body)) || back.EventID != ev.EventID {
		t.Fatalf("record does not decode to itself: %v", err)
	}
}

func FuzzStripeEnvelope(f *testing.F) {
	f.Add([]byte(stripeRefundBody))
	f.Add([]byte(`{"id":"evt_1","type":"x","created":1,"data":{"object":{"customer":{"id":{"id":1}}}}}`))
	f.Add([]byte(`{"id":"evt_1","type":"x","created":1e3,"data":{"object":{"customer":12}}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(" {\"id\":\"evt_1\",\"type\":\"x\",\"created\":1}\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := parseStripeEvent(body)
		if err != nil {
			return
		}
		storable(t, ev)
		if string(ev.Body) != string(body) {
			t.Fatal("body not kept as received")
		}
	})
}

func FuzzKitDelivery(f *testing.F) {
	f.Add([]byte(kitDeliveryBody))
	f.Add([]byte(`{"events":[{"id":"a","type":"t","created":"2026-03-02T10:15:00Z","data":{"subscriber":{"id":"x y"}}}]}`))
	f.Add([]byte(`{"events":[null]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := parseKitDelivery(body)
		if err != nil {
			return
		}
		if len(evs) == 0 || len(evs) > maxKitEvents {
			t.Fatalf("%d events accepted", len(evs))
		}
		for _, ev := range evs {
			storable(t, ev)
		}
	})
}

func FuzzKitLegacy(f *testing.F) {
	f.Add([]byte(`{"subscriber":{"id":4455667,"email_address":"Maria.Lopez@example.org","state":"active"}}`), "subscriber.subscriber_activate")
	f.Add([]byte(`{"id":91,"transaction_id":"txn-1","transaction_time":"2026-03-02T10:14:58Z","total":49.0}`), "")
	f.Add([]byte(`{"subscriber":null}`), "Purchase.Create!")
	f.Fuzz(func(t *testing.T, body []byte, hint string) {
		ev, err := parseKitLegacy(body, hint, fuzzNow)
		if err != nil {
			return
		}
		storable(t, ev)
		again, err := parseKitLegacy(body, hint, fuzzNow)
		if err != nil || again.EventID != ev.EventID {
			t.Fatal("legacy key is not deterministic")
		}
	})
}

func FuzzCirclePush(f *testing.F) {
	f.Add([]byte(`{"source":"circle","event":"member.tag_added","occurred_at":"2026-03-02T10:25:00Z","community_member_id":31337,"email":"maria.lopez@example.org","member_tag_id":77}`))
	f.Add([]byte(`{"id":12,"event":"member.created"}`))
	f.Add([]byte(`{"event":"e","community_member_id":{"id":"1"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := parseCirclePush(body, fuzzNow)
		if err != nil {
			return
		}
		storable(t, ev)
	})
}

func FuzzCircleMember(f *testing.F) {
	f.Add([]byte(`{"id":31337,"updated_at":"2026-03-02T10:21:00.000Z","member_tags":[{"id":77},{"id":"x"},3]}`))
	f.Add([]byte(`{"id":"1","updated_at":"2026-03-02T10:21:00Z"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		id, _, key, err := memberState(raw)
		if err != nil {
			return
		}
		if !validToken(id) || len(key) != 64 {
			t.Fatalf("id %q key %q", id, key)
		}
		if _, _, again, _ := memberState(raw); again != key {
			t.Fatal("member key is not deterministic")
		}
	})
}

// refMembers is the slow, obviously right reading of an object's members
// (exact keys, last one wins) that members must agree with.
func refMembers(b []byte) (map[string]json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

func FuzzMembersMatchesEncodingJSON(f *testing.F) {
	f.Add([]byte(stripeRefundBody))
	f.Add([]byte(`{"a":"x\"y\\","b":[1,{"c":"}"}],"a":2,"\u0069d":"evt"}`))
	f.Add([]byte(` { } `))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		want, isObj := refMembers(b)
		got := map[string]string{}
		ok := members(b, func(k, v []byte) { got[string(k)] = string(v) })
		if ok != isObj {
			t.Fatalf("members ok=%v, encoding/json object=%v", ok, isObj)
		}
		if !ok {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("members found %d keys, encoding/json %d", len(got), len(want))
		}
		for k, v := range want {
			if got[k] != string(v) {
				t.Fatalf("key %q: members %q, encoding/json %q", k, got[k], v)
			}
		}
	})
}
