package circle

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// member is the part of a Circle community member the sink reads.
type member struct {
	ID     int64
	Email  string
	Tags   map[int64]bool
	Fields map[string]string // every profile field of the community; "" when unset
}

type rawMember struct {
	ID         json.Number `json:"id"`
	Email      string      `json:"email"`
	MemberTags []struct {
		ID json.Number `json:"id"`
	} `json:"member_tags"`
	Flattened map[string]json.RawMessage `json:"flattened_profile_fields"`
}

func (r rawMember) parse() (member, error) {
	id, err := r.ID.Int64()
	if err != nil || id <= 0 {
		return member{}, fmt.Errorf("community member id %q is not a positive integer", r.ID)
	}
	m := member{ID: id, Email: r.Email, Tags: map[int64]bool{}, Fields: make(map[string]string, len(r.Flattened))}
	for _, t := range r.MemberTags {
		tid, err := t.ID.Int64()
		if err != nil {
			return member{}, fmt.Errorf("member tag id %q is not an integer", t.ID)
		}
		m.Tags[tid] = true
	}
	for k, v := range r.Flattened {
		m.Fields[k] = fieldText(v)
	}
	return m, nil
}

// fieldText renders a flattened profile field value as text: a string, a
// number, null, or (for select fields) a list of choices joined by ", ".
func fieldText(v json.RawMessage) string {
	t := strings.TrimSpace(string(v))
	if t == "" || t == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var list []string
	if json.Unmarshal(v, &list) == nil {
		return strings.Join(list, ", ")
	}
	return t
}

// parseMember decodes a community_member (search, show, update).
func parseMember(b []byte) (member, error) {
	var r rawMember
	if err := decode(b, &r); err != nil {
		return member{}, err
	}
	return r.parse()
}

// parseCreated decodes the answer to POST /community_members.
func parseCreated(b []byte) (member, error) {
	var body struct {
		Member *rawMember `json:"community_member"`
	}
	if err := decode(b, &body); err != nil {
		return member{}, err
	}
	if body.Member == nil {
		return member{}, errors.New("answer has no community_member")
	}
	return body.Member.parse()
}

// listPage is the document's paginated list envelope, with records left raw.
type listPage struct {
	HasNext bool              `json:"has_next_page"`
	Records []json.RawMessage `json:"records"`
}

// parseIDPage decodes a page of a list whose records have an id and a name
// or key (access groups, member tags, profile fields): id → name (or key).
func parseIDPage(b []byte) (map[int64]string, bool, error) {
	var p listPage
	if err := decode(b, &p); err != nil {
		return nil, false, err
	}
	out := make(map[int64]string, len(p.Records))
	for _, raw := range p.Records {
		var rec struct {
			ID   json.Number `json:"id"`
			Name string      `json:"name"`
			Key  string      `json:"key"`
		}
		if err := decode(raw, &rec); err != nil {
			return nil, false, err
		}
		id, err := rec.ID.Int64()
		if err != nil {
			return nil, false, fmt.Errorf("record id %q is not an integer", rec.ID)
		}
		if rec.Key != "" {
			out[id] = rec.Key
		} else {
			out[id] = rec.Name
		}
	}
	return out, p.HasNext, nil
}

func decode(b []byte, v any) error {
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("circle answer is not the expected JSON: %w", err)
	}
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
