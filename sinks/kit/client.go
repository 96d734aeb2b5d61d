package kit

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// subscriber is the part of a Kit v4 subscriber the sink reads.
type subscriber struct {
	ID     int64
	Email  string
	State  string
	Fields map[string]string // every custom field of the account; "" when unset
}

type rawSubscriber struct {
	ID           json.Number                `json:"id"`
	EmailAddress string                     `json:"email_address"`
	State        string                     `json:"state"`
	Fields       map[string]json.RawMessage `json:"fields"`
}

func (r rawSubscriber) parse() (subscriber, error) {
	id, err := r.ID.Int64()
	if err != nil || id <= 0 {
		return subscriber{}, fmt.Errorf("subscriber id %q is not a positive integer", r.ID)
	}
	s := subscriber{ID: id, Email: r.EmailAddress, State: r.State, Fields: make(map[string]string, len(r.Fields))}
	for k, v := range r.Fields {
		s.Fields[k] = scalar(v)
	}
	return s, nil
}

// scalar renders a custom field value as text: Kit stores strings, but a
// null or a number may come back.
func scalar(v json.RawMessage) string {
	t := strings.TrimSpace(string(v))
	if t == "" || t == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return t
}

// parseSubscriberList decodes GET /v4/subscribers.
func parseSubscriberList(b []byte) ([]subscriber, error) {
	var body struct {
		Subscribers []rawSubscriber `json:"subscribers"`
	}
	if err := decode(b, &body); err != nil {
		return nil, err
	}
	out := make([]subscriber, 0, len(body.Subscribers))
	for _, r := range body.Subscribers {
		s, err := r.parse()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// parseSubscriber decodes {"subscriber": {…}} (create, show, update).
func parseSubscriber(b []byte) (subscriber, error) {
	var body struct {
		Subscriber *rawSubscriber `json:"subscriber"`
	}
	if err := decode(b, &body); err != nil {
		return subscriber{}, err
	}
	if body.Subscriber == nil {
		return subscriber{}, errors.New("answer has no subscriber")
	}
	return body.Subscriber.parse()
}

type page struct {
	HasNext   bool    `json:"has_next_page"`
	EndCursor *string `json:"end_cursor"`
}

// parseTagPage decodes a page of GET /v4/subscribers/{id}/tags or /v4/tags:
// the tag ids and names, and the cursor of the next page ("" when last).
func parseTagPage(b []byte) (map[int64]string, string, error) {
	var body struct {
		Tags []struct {
			ID   json.Number `json:"id"`
			Name string      `json:"name"`
		} `json:"tags"`
		Pagination page `json:"pagination"`
	}
	if err := decode(b, &body); err != nil {
		return nil, "", err
	}
	out := make(map[int64]string, len(body.Tags))
	for _, t := range body.Tags {
		id, err := t.ID.Int64()
		if err != nil {
			return nil, "", fmt.Errorf("tag id %q is not an integer", t.ID)
		}
		out[id] = t.Name
	}
	return out, next(body.Pagination), nil
}

// parseFieldPage decodes a page of GET /v4/custom_fields: the field keys
// and the next cursor.
func parseFieldPage(b []byte) ([]string, string, error) {
	var body struct {
		Fields []struct {
			Key string `json:"key"`
		} `json:"custom_fields"`
		Pagination page `json:"pagination"`
	}
	if err := decode(b, &body); err != nil {
		return nil, "", err
	}
	out := make([]string, 0, len(body.Fields))
	for _, f := range body.Fields {
		out = append(out, f.Key)
	}
	return out, next(body.Pagination), nil
}

func next(p page) string {
	if p.HasNext && p.EndCursor != nil {
		return *p.EndCursor
	}
	return ""
}

func decode(b []byte, v any) error {
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("kit answer is not the expected JSON: %w", err)
	}
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
