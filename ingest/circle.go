package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"time"

	"github.com/launchready/launchready/schemas"
)

// canonicalJSON re-encodes JSON with object keys sorted and numbers kept as
// written, so two encodings of the same value hash alike.
func canonicalJSON(b []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("trailing data")
	}
	return json.Marshal(v)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

type circlePush struct {
	ID                json.RawMessage `json:"id"`
	Event             string          `json:"event"`
	OccurredAt        string          `json:"occurred_at"`
	CommunityMemberID json.RawMessage `json:"community_member_id"`
}

// parseCirclePush reads our own push envelope, sent by a Circle workflow or a
// relay: {event, occurred_at, community_member_id, email, …}. EventID is the
// envelope's "id" when it has one, else "push_" + sha256 of the canonical
// JSON (a workflow retry sends the same body, so it gets the same key).
// ObjectID is the community member id; ProviderTime is occurred_at, or
// received when absent.
func parseCirclePush(b []byte, received time.Time) (schemas.RawEvent, error) {
	var p circlePush
	if !isObject(b) || json.Unmarshal(b, &p) != nil {
		return schemas.RawEvent{}, errBadJSON
	}
	if !validToken(p.Event) {
		return schemas.RawEvent{}, errMissingType
	}
	ev := schemas.RawEvent{
		Provider:     schemas.ProviderCircle,
		Type:         p.Event,
		ObjectID:     idOf(p.CommunityMemberID),
		ProviderTime: received,
		Body:         json.RawMessage(b),
	}
	if p.OccurredAt != "" {
		at, err := time.Parse(time.RFC3339Nano, p.OccurredAt)
		if err != nil {
			return schemas.RawEvent{}, errMissingTime
		}
		ev.ProviderTime = at.UTC()
	}
	if len(p.ID) > 0 && string(p.ID) != "null" {
		if ev.EventID = idOf(p.ID); ev.EventID == "" {
			return schemas.RawEvent{}, errMissingID
		}
		return ev, nil
	}
	canon, err := canonicalJSON(b)
	if err != nil {
		return schemas.RawEvent{}, errBadJSON
	}
	ev.EventID = "push_" + sha256Hex(canon)
	return ev, nil
}

// circleMember is what the poller reads of a community member. Every field
// that matters to reconciliation is "tracked": a change to any of them —
// including tags and profile fields, which need not move updated_at — yields
// a new state key.
type circleMember struct {
	ID        json.RawMessage `json:"id"`
	UpdatedAt string          `json:"updated_at"`
}

// trackedMemberFields are the member fields whose change is an event.
// Activity counters, gamification and last_seen_at are left out: they change
// all the time and mean nothing to entitlements.
var trackedMemberFields = []string{
	"id", "user_id", "email", "name", "first_name", "last_name", "active",
	"accepted_invitation", "sso_provider_user_id", "member_tags", "flattened_profile_fields",
}

// memberState returns a community member's id, updated_at and deterministic
// state key: sha256(id | updated_at | canonical JSON of the tracked fields).
// member_tags are sorted by id first, so the order the API lists them in does
// not matter.
func memberState(raw []byte) (id string, updated time.Time, key string, err error) {
	var m circleMember
	if !isObject(raw) || json.Unmarshal(raw, &m) != nil {
		return "", time.Time{}, "", errBadJSON
	}
	if id = idOf(m.ID); id == "" {
		return "", time.Time{}, "", errMissingID
	}
	updated, err = time.Parse(time.RFC3339Nano, m.UpdatedAt)
	if err != nil {
		return "", time.Time{}, "", errMissingTime
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var all map[string]any
	if err := d.Decode(&all); err != nil {
		return "", time.Time{}, "", errBadJSON
	}
	tracked := make(map[string]any, len(trackedMemberFields))
	for _, f := range trackedMemberFields {
		if v, ok := all[f]; ok {
			tracked[f] = v
		}
	}
	if tags, ok := tracked["member_tags"].([]any); ok {
		sort.SliceStable(tags, func(i, j int) bool { return tagID(tags[i]) < tagID(tags[j]) })
	}
	canon, err := json.Marshal(tracked)
	if err != nil {
		return "", time.Time{}, "", errBadJSON
	}
	h := sha256.New()
	h.Write([]byte(id))
	h.Write([]byte{'|'})
	h.Write([]byte(m.UpdatedAt))
	h.Write([]byte{'|'})
	h.Write(canon)
	return id, updated.UTC(), hex.EncodeToString(h.Sum(nil)), nil
}

func tagID(t any) float64 {
	m, _ := t.(map[string]any)
	n, _ := m["id"].(json.Number)
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return 0
	}
	return f
}
