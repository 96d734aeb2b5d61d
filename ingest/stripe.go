package ingest

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/launchready/launchready/schemas"
)

// Body problems: answered 400 and counted by reason; never stored.
var (
	errBadJSON      = errors.New("malformed JSON")
	errMissingID    = errors.New("missing or invalid event id")
	errMissingType  = errors.New("missing or invalid event type")
	errMissingTime  = errors.New("missing or invalid event time")
	errNoEvents     = errors.New("delivery has no events")
	errTooManyEvent = errors.New("delivery has more than 100 events")
)

// validToken accepts an id or type: 1–255 printable ASCII characters, no
// spaces. Anything else is not a provider id and is not stored as one.
func validToken(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// parseStripeEvent reads a Stripe event envelope (a webhook body, or one
// element of GET /v1/events). It fills EventID (evt_…), Type, ProviderTime
// (created) and ObjectID: the customer the event is about, so one customer's
// events share a partition — data.object.customer (an id or an expanded
// customer), or data.object.id when the object is the customer itself.
// Body is set to b, which is checked to be valid JSON. Keys match exactly;
// a repeated key's last value wins.
func parseStripeEvent(b []byte) (schemas.RawEvent, error) {
	if !json.Valid(b) {
		return schemas.RawEvent{}, errBadJSON
	}
	var id, typ string
	var created int64
	var idOK, typeOK, createdOK bool
	var data []byte
	if !members(b, func(k, v []byte) {
		switch string(k) {
		case "id":
			id, idOK = stringValue(v)
		case "type":
			typ, typeOK = stringValue(v)
		case "created":
			created, createdOK = intValue(v)
		case "data":
			data = v
		}
	}) {
		return schemas.RawEvent{}, errBadJSON
	}
	if !idOK || !validToken(id) {
		return schemas.RawEvent{}, errMissingID
	}
	if !typeOK || !validToken(typ) {
		return schemas.RawEvent{}, errMissingType
	}
	if !createdOK || created <= 0 || created > 1<<40 {
		return schemas.RawEvent{}, errMissingTime
	}
	ev := schemas.RawEvent{
		Provider:     schemas.ProviderStripe,
		EventID:      id,
		Type:         typ,
		ProviderTime: time.Unix(created, 0).UTC(),
		Body:         json.RawMessage(b),
	}
	var object []byte
	members(data, func(k, v []byte) {
		if string(k) == "object" {
			object = v
		}
	})
	var objID, objKind string
	var customer []byte
	members(object, func(k, v []byte) {
		switch string(k) {
		case "id":
			objID, _ = stringValue(v)
		case "object":
			objKind, _ = stringValue(v)
		case "customer":
			customer = v
		}
	})
	switch {
	case objKind == "customer" && validToken(objID):
		ev.ObjectID = objID
	case len(customer) > 0:
		ev.ObjectID = idOf(customer)
	}
	return ev, nil
}

// idOf reads an id that is either a JSON string or number, or an expanded
// object with an "id" field; "" when it is none of those or not a valid token.
func idOf(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var id string
	switch raw[0] {
	case '"':
		_ = json.Unmarshal(raw, &id)
	case '{':
		var o struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(raw, &o) == nil && len(o.ID) > 0 && o.ID[0] != '{' {
			return idOf(o.ID)
		}
	default:
		var n json.Number
		if json.Unmarshal(raw, &n) == nil {
			id = n.String()
		}
	}
	if !validToken(id) {
		return ""
	}
	return id
}

// isObject reports whether b, after leading JSON whitespace, starts an object.
func isObject(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}
