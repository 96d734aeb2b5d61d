// Package stripe speaks enough of Stripe for tests and traffic generation:
// realistic events built from Stripe's own published object fixtures
// (objects.json), the Stripe-Signature header a webhook endpoint verifies,
// and an HTTP server for GET /v1/events with Stripe's pagination and auth.
package stripe

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

//go:embed objects.json
var objectsJSON []byte

// objects holds the fixtures, decoded once; builders work on deep copies.
var objects = func() map[string]map[string]any {
	var m map[string]map[string]any
	if err := json.Unmarshal(objectsJSON, &m); err != nil {
		panic("simulate/stripe: objects.json: " + err.Error())
	}
	return m
}()

// Object returns a deep copy of the named Stripe fixture object ("customer",
// "subscription", "invoice", "charge", "checkout.session", "dispute",
// "refund", "price", "product", "payment_intent", "event"), or nil.
func Object(name string) map[string]any {
	o, ok := objects[name]
	if !ok {
		return nil
	}
	return deepCopy(o)
}

func deepCopy(o map[string]any) map[string]any {
	b, err := json.Marshal(o)
	if err != nil {
		panic(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewID returns a Stripe-shaped id with the prefix, e.g. NewID("evt") =
// "evt_1Qx…" (24 random characters after the underscore).
func NewID(prefix string) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	b[0] = '1'
	return prefix + "_" + string(b)
}

// Sign returns the Stripe-Signature header value for body signed with secret
// at time t: "t=<unix>,v1=<hex HMAC-SHA256(secret, "<unix>.<body>")>".
func Sign(secret string, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + Signature(secret, ts, body)
}

// SignMany is Sign with one v1 per secret, as Stripe sends while a secret is
// being rolled.
func SignMany(secrets []string, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	h := "t=" + ts
	for _, s := range secrets {
		h += ",v1=" + Signature(s, ts, body)
	}
	return h
}

// Signature is hex(HMAC-SHA256(secret, ts + "." + body)).
func Signature(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Event is one Stripe event: its id, type, creation time and JSON body as
// Stripe would deliver it.
type Event struct {
	ID      string
	Type    string
	Created time.Time
	Body    []byte
}

// Customer returns the id of the customer the event is about ("" if none).
func (e Event) Customer() string {
	var env struct {
		Data struct {
			Object struct {
				ID       string          `json:"id"`
				Object   string          `json:"object"`
				Customer json.RawMessage `json:"customer"`
			} `json:"object"`
		} `json:"data"`
	}
	if json.Unmarshal(e.Body, &env) != nil {
		return ""
	}
	o := env.Data.Object
	if o.Object == "customer" {
		return o.ID
	}
	var s string
	if json.Unmarshal(o.Customer, &s) == nil {
		return s
	}
	return ""
}

// DefaultAPIVersion is the API version builders stamp on events: "basil",
// where subscription periods live on items and an invoice's subscription
// under parent.subscription_details.
const DefaultAPIVersion = "2025-06-30.basil"

// NewEvent wraps object (and previous_attributes, when not nil) in an event
// envelope built from the fixture event. Zero id and created are filled in.
func NewEvent(typ string, object, previous map[string]any, id string, created time.Time, apiVersion string) Event {
	if id == "" {
		id = NewID("evt")
	}
	if created.IsZero() {
		created = time.Now()
	}
	if apiVersion == "" {
		apiVersion = DefaultAPIVersion
	}
	ev := Object("event")
	ev["id"] = id
	ev["type"] = typ
	ev["created"] = created.Unix()
	ev["api_version"] = apiVersion
	ev["livemode"] = false
	ev["pending_webhooks"] = 1
	ev["request"] = map[string]any{"id": nil, "idempotency_key": nil}
	data := map[string]any{"object": object}
	if previous != nil {
		data["previous_attributes"] = previous
	}
	ev["data"] = data
	body, err := json.Marshal(ev)
	if err != nil {
		panic(fmt.Sprintf("simulate/stripe: encode %s: %v", typ, err))
	}
	return Event{ID: id, Type: typ, Created: time.Unix(created.Unix(), 0).UTC(), Body: body}
}
