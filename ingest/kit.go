package ingest

import (
	"encoding/json"
	"regexp"
	"time"

	"github.com/launchready/launchready/schemas"
)

// maxKitEvents is the most events Kit puts in one delivery.
const maxKitEvents = 100

type kitDelivery struct {
	Events []json.RawMessage `json:"events"`
}

type kitEvent struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Created string `json:"created"`
	Data    struct {
		Subscriber struct {
			ID json.RawMessage `json:"id"`
		} `json:"subscriber"`
	} `json:"data"`
}

// isKitDelivery reports whether b is a current-system Kit delivery (an
// object with an "events" member) rather than a legacy bare-object body.
func isKitDelivery(b []byte) bool {
	var probe struct {
		Events json.RawMessage `json:"events"`
	}
	return json.Unmarshal(b, &probe) == nil && len(probe.Events) > 0
}

// parseKitDelivery splits a Kit delivery into one record per event, in
// delivery order. Each record's EventID is the event's own id (the dedup key:
// a retried delivery repeats them under the same delivery_id), ObjectID the
// subscriber id, ProviderTime the event's created time and Body the event
// object exactly as it appears in the delivery. The whole delivery is
// refused when any event is malformed, so a retry re-sends it whole.
func parseKitDelivery(b []byte) ([]schemas.RawEvent, error) {
	var d kitDelivery
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, errBadJSON
	}
	if len(d.Events) == 0 {
		return nil, errNoEvents
	}
	if len(d.Events) > maxKitEvents {
		return nil, errTooManyEvent
	}
	out := make([]schemas.RawEvent, 0, len(d.Events))
	for _, raw := range d.Events {
		var e kitEvent
		if !isObject(raw) || json.Unmarshal(raw, &e) != nil {
			return nil, errBadJSON
		}
		if !validToken(e.ID) {
			return nil, errMissingID
		}
		if !validToken(e.Type) {
			return nil, errMissingType
		}
		at, err := time.Parse(time.RFC3339Nano, e.Created)
		if err != nil {
			return nil, errMissingTime
		}
		out = append(out, schemas.RawEvent{
			Provider:     schemas.ProviderKit,
			EventID:      e.ID,
			Type:         e.Type,
			ObjectID:     idOf(e.Data.Subscriber.ID),
			ProviderTime: at.UTC(),
			Body:         raw,
		})
	}
	return out, nil
}

// legacyType is what a legacy webhook's ?event= hint may look like
// (subscriber.subscriber_activate, purchase.purchase_create, …).
var legacyType = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z0-9_]+){0,3}$`)

type kitLegacy struct {
	Subscriber *struct {
		ID json.RawMessage `json:"id"`
	} `json:"subscriber"`
	TransactionID   json.RawMessage `json:"transaction_id"`
	TransactionTime string          `json:"transaction_time"`
}

// parseKitLegacy reads a legacy Kit webhook body: a bare subscriber or
// purchase object with no event id, type or time. EventID is synthetic —
// "legacy_" + sha256 of the canonical JSON, so a re-sent body is recognised
// whatever its whitespace or key order. Type is the target URL's ?event=
// hint when it looks like a legacy event name, else "legacy.subscriber",
// "legacy.purchase" or "legacy.unknown". ProviderTime is the purchase's
// transaction_time, else received (the body carries no event time).
func parseKitLegacy(b []byte, hint string, received time.Time) (schemas.RawEvent, error) {
	var l kitLegacy
	if !isObject(b) || json.Unmarshal(b, &l) != nil {
		return schemas.RawEvent{}, errBadJSON
	}
	canon, err := canonicalJSON(b)
	if err != nil {
		return schemas.RawEvent{}, errBadJSON
	}
	ev := schemas.RawEvent{
		Provider:     schemas.ProviderKit,
		EventID:      "legacy_" + sha256Hex(canon),
		Type:         "legacy.unknown",
		ProviderTime: received,
		Body:         json.RawMessage(b),
	}
	switch {
	case l.Subscriber != nil:
		ev.Type = "legacy.subscriber"
		ev.ObjectID = idOf(l.Subscriber.ID)
	case len(l.TransactionID) > 0:
		ev.Type = "legacy.purchase"
		if at, err := time.Parse(time.RFC3339Nano, l.TransactionTime); err == nil {
			ev.ProviderTime = at.UTC()
		}
	}
	if len(hint) <= 64 && legacyType.MatchString(hint) {
		ev.Type = hint
	}
	return ev, nil
}
