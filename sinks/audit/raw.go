package audit

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// rawFacts gathers the keys a provider body names: emails anywhere, and the
// provider's own id of the person (Stripe data.object.customer, or the id of
// a customer object; Kit subscriber id; Circle member id).
type rawFacts struct {
	provider       string
	emails         []string
	customer       string
	objectID       string
	objectType     string
	subscriberID   string
	memberID       string
	pushedMemberID string
}

func (f *rawFacts) wants(key string) bool {
	switch key {
	case "email", "email_address", "customer", "id", "object", "community_member_id":
		return true
	}
	return strings.HasSuffix(key, "_email")
}

func (f *rawFacts) visit(path []string, key, v string) {
	if key == "email" || key == "email_address" || strings.HasSuffix(key, "_email") {
		if e := normEmail(v); strings.Contains(e, "@") && !contains(f.emails, e) {
			f.emails = append(f.emails, e)
		}
		return
	}
	dataObject := len(path) == 2 && path[0] == "data" && path[1] == "object"
	switch {
	case f.provider == schemas.ProviderStripe && dataObject && key == "customer" && strings.HasPrefix(v, "cus_"):
		f.customer = v
	case f.provider == schemas.ProviderStripe && dataObject && key == "id":
		f.objectID = v
	case f.provider == schemas.ProviderStripe && dataObject && key == "object":
		f.objectType = v
	case f.provider == schemas.ProviderKit && key == "id" && len(path) > 0 && path[len(path)-1] == "subscriber":
		f.subscriberID = v
	case f.provider == schemas.ProviderCircle && key == "id" && len(path) == 0:
		f.memberID = v
	case f.provider == schemas.ProviderCircle && key == "community_member_id" && len(path) == 0:
		f.pushedMemberID = v
	}
}

// person is the provider's id of the person the body is about, if it names one.
func (f *rawFacts) person() string {
	switch {
	case f.customer != "":
		return f.customer
	case f.objectType == "customer" && strings.HasPrefix(f.objectID, "cus_"):
		return f.objectID
	case f.subscriberID != "":
		return f.subscriberID
	case f.memberID != "":
		return f.memberID
	}
	return f.pushedMemberID
}

// decodeRawEvent reads a RawEvent record in one pass and redacts its body on
// the way (encoding/json would scan the body twice before the redaction
// read it again: raw events are most of the audit's volume). The facts of
// the body go to f, whose provider must be set from the record first when
// known; it is set here otherwise, which the body's position after
// "provider" makes the usual case.
func decodeRawEvent(rec []byte, red *Redactor, f *rawFacts, verdicts map[string]bool) (e schemas.RawEvent, payload []byte, err error) {
	s := scanner{in: rec, r: red}
	var body []byte
	err = s.members(func(key string) (err error) {
		switch key {
		case "v":
			e.V, err = s.intField()
		case "provider":
			e.Provider, err = s.stringField()
		case "event_id":
			e.EventID, err = s.stringField()
		case "type":
			e.Type, err = s.stringField()
		case "object_id":
			e.ObjectID, err = s.stringField()
		case "provider_time":
			e.ProviderTime, err = s.timeField()
		case "received_at":
			e.ReceivedAt, err = s.timeField()
		case "source":
			e.Source, err = s.stringField()
		case "verification":
			e.Verification, err = s.stringField()
		case "request_id":
			e.RequestID, err = s.stringField()
		case "duplicate":
			e.Duplicate, err = s.boolField()
		case "first_seen_at":
			var t time.Time
			if t, err = s.timeField(); err == nil && !t.IsZero() {
				e.FirstSeenAt = &t
			}
		case "body":
			if e.Provider != "" { // the usual order: redact in this same pass
				f.provider = e.Provider
				sub := scanner{in: s.in, pos: s.pos, out: make([]byte, 0, len(s.in)-s.pos), r: red, v: f, verdicts: verdicts}
				if err = sub.value(true, 0); err == nil {
					payload, body, s.pos = sub.out, nil, sub.pos
				}
				return err
			}
			start := s.pos
			if err = s.skip(); err == nil {
				body, payload = s.in[start:s.pos], nil
			}
		default:
			err = s.skip()
		}
		return err
	})
	if err != nil {
		return e, nil, err
	}
	if s.ws(); s.pos != len(s.in) {
		return e, nil, s.fail("trailing data")
	}
	if len(body) > 0 {
		f.provider = e.Provider
		payload, err = red.scanWith(body, f, verdicts)
	}
	if string(payload) == "null" {
		payload = nil
	}
	return e, payload, err
}

func (d *decoder) raw(b *batch, m *kafka.Message) error {
	var f rawFacts
	e, out, err := decodeRawEvent(m.Value, d.red, &f, b.verdictMap())
	if err != nil {
		return err
	}
	if err := checkVersion(e.V, schemas.RawVersion); err != nil {
		return err
	}
	if e.Provider == "" || e.EventID == "" {
		return fmt.Errorf("raw event without provider or event_id")
	}
	payload, payloadErr := ownedString(out), "" // payload_error is kept for bodies stored without their payload
	at := orTime(e.ReceivedAt, m.Time)
	recordID := e.Provider + ":" + e.EventID + "@" + strconv.FormatInt(at.UnixNano(), 10)
	person := f.person()
	customerKey := firstOf(e.ObjectID, person)
	if customerKey == "" && len(f.emails) > 0 {
		customerKey = f.emails[0]
	}
	t := &b.raw
	t.base.add(at)
	t.customerKey = append(t.customerKey, customerKey)
	t.recordID = append(t.recordID, recordID)
	t.provider = append(t.provider, e.Provider)
	t.eventID = append(t.eventID, e.EventID)
	t.typ = append(t.typ, e.Type)
	t.objectID = append(t.objectID, e.ObjectID)
	t.providerCustomer = append(t.providerCustomer, person)
	t.emails = append(t.emails, nonNil(f.emails))
	t.providerTime = append(t.providerTime, clampTime(e.ProviderTime))
	t.providerMS = append(t.providerMS, msOf(e.ProviderTime))
	t.source = append(t.source, e.Source)
	t.verification = append(t.verification, e.Verification)
	t.duplicate = append(t.duplicate, boolByte(e.Duplicate))
	firstSeen := int64(0)
	if e.FirstSeenAt != nil {
		firstSeen = msOf(*e.FirstSeenAt)
	}
	t.firstSeenMS = append(t.firstSeenMS, firstSeen)
	t.requestID = append(t.requestID, e.RequestID)
	t.payload = append(t.payload, payload)
	t.payloadError = append(t.payloadError, payloadErr)
	t.origin.add(m)
	b.keys.add("raw_events", customerKey, recordID, at, append([]string{e.ObjectID, person}, f.emails...)...)
	return nil
}
