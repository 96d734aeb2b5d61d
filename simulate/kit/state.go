package kitsim

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Tag is a Kit tag.
type Tag struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Subscriber is a subscriber's state as the Go API returns it.
type Subscriber struct {
	ID        int64
	FirstName string
	Email     string
	State     string // active, cancelled, …
	CreatedAt time.Time
	// Fields holds the custom fields that have a value.
	Fields map[string]string
	// Tags are the ids of the subscriber's tags, ascending.
	Tags []int64
}

type subscriber struct {
	id        int64
	firstName *string
	email     string
	state     string
	createdAt time.Time
	fields    map[string]string
	tags      map[int64]time.Time // tag id → tagged at
}

type field struct {
	id         int64
	key, label string
}

// Subscriber states (Kit confirms active; the others are documented names
// not confirmed against the current system).
const (
	StateActive    = "active"
	StateCancelled = "cancelled"
	StateInactive  = "inactive"
	StateBounced   = "bounced"
	StateComplaint = "complained"
)

var validStates = map[string]bool{StateActive: true, StateCancelled: true, StateInactive: true, StateBounced: true, StateComplaint: true}

func (s *Server) addTag(t Tag) Tag {
	if t.ID == 0 {
		s.nextTag++
		t.ID = s.nextTag
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = s.now().UTC()
	}
	s.tags[t.ID] = &t
	return t
}

var nonKey = regexp.MustCompile(`[^a-z0-9]+`)

// fieldKey is how Kit derives a custom field's key from its label.
func fieldKey(label string) string {
	return strings.Trim(nonKey.ReplaceAllString(strings.ToLower(label), "_"), "_")
}

func (s *Server) addField(label string) field {
	key := fieldKey(label)
	for _, f := range s.fields {
		if f.key == key {
			return f
		}
	}
	s.nextFld++
	f := field{id: s.nextFld, key: key, label: label}
	s.fields = append(s.fields, f)
	return f
}

func (s *Server) hasField(key string) bool {
	for _, f := range s.fields {
		if f.key == key {
			return true
		}
	}
	return false
}

func (s *Server) byAddress(email string) *subscriber {
	if id, ok := s.byEmail[normEmail(email)]; ok {
		return s.subs[id]
	}
	return nil
}

// create adds a subscriber; the caller holds s.mu.
func (s *Server) create(email string, firstName *string, state string, fields map[string]string) *subscriber {
	s.nextID++
	sub := &subscriber{id: s.nextID, firstName: firstName, email: strings.TrimSpace(email), state: state, createdAt: s.now().UTC().Truncate(time.Second), fields: map[string]string{}, tags: map[int64]time.Time{}}
	s.setFields(sub, fields)
	s.subs[sub.id] = sub
	s.byEmail[normEmail(email)] = sub.id
	s.stats.Created++
	s.emit(EventSubscriberCreated, sub, nil)
	return sub
}

// setFields stores the known fields and silently ignores unknown ones, as
// Kit does. An empty value clears a field.
func (s *Server) setFields(sub *subscriber, fields map[string]string) {
	for k, v := range fields {
		if !s.hasField(k) {
			continue
		}
		if v == "" {
			delete(sub.fields, k)
		} else {
			sub.fields[k] = v
		}
	}
}

// tag tags sub; it reports false (and counts a duplicate) when sub already had it.
func (s *Server) tag(sub *subscriber, t *Tag) bool {
	if _, ok := sub.tags[t.ID]; ok {
		s.stats.DuplicateTags++
		return false
	}
	sub.tags[t.ID] = s.now().UTC().Truncate(time.Second)
	s.emit(EventTagAdd, sub, t)
	return true
}

func (s *Server) untag(sub *subscriber, t *Tag) {
	if _, ok := sub.tags[t.ID]; !ok {
		return
	}
	delete(sub.tags, t.ID)
	s.emit(EventTagRemove, sub, t)
}

func (s *Server) unsubscribeLocked(sub *subscriber) {
	if sub.state == StateCancelled {
		return
	}
	sub.state = StateCancelled
	s.emit(EventSubscriberUnsubscribed, sub, nil)
}

func (sub *subscriber) export() Subscriber {
	out := Subscriber{ID: sub.id, Email: sub.email, State: sub.state, CreatedAt: sub.createdAt, Fields: map[string]string{}}
	if sub.firstName != nil {
		out.FirstName = *sub.firstName
	}
	for k, v := range sub.fields {
		out.Fields[k] = v
	}
	for id := range sub.tags {
		out.Tags = append(out.Tags, id)
	}
	sort.Slice(out.Tags, func(i, j int) bool { return out.Tags[i] < out.Tags[j] })
	return out
}

// AddSubscriber creates (or, for a known email, updates the fields and tags
// of) a subscriber directly, as a form signup or a person in Kit's UI would.
// It sends the same webhooks as the API. Unknown tag ids are an error.
func (s *Server) AddSubscriber(email, firstName string, tags []int64, fields map[string]string) (Subscriber, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range tags {
		if s.tags[id] == nil {
			return Subscriber{}, fmt.Errorf("kitsim: tag %d does not exist", id)
		}
	}
	sub := s.byAddress(email)
	if sub == nil {
		var fn *string
		if firstName != "" {
			fn = &firstName
		}
		sub = s.create(email, fn, StateActive, fields)
	} else {
		s.setFields(sub, fields)
	}
	for _, id := range tags {
		if _, ok := sub.tags[id]; !ok {
			s.tag(sub, s.tags[id])
		}
	}
	return sub.export(), nil
}

// Subscriber returns the subscriber with email (case-insensitive).
func (s *Server) Subscriber(email string) (Subscriber, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.byAddress(email)
	if sub == nil {
		return Subscriber{}, false
	}
	return sub.export(), true
}

// Subscribers returns every subscriber, by id.
func (s *Server) Subscribers() []Subscriber {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Subscriber, 0, len(s.subs))
	for _, sub := range s.subs {
		out = append(out, sub.export())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// TagSubscriber and UntagSubscriber change a subscriber's tags by hand, as a
// person in Kit's UI would (a manual tag is not counted as a duplicate).
func (s *Server) TagSubscriber(email string, tagID int64) error {
	return s.edit(email, tagID, func(sub *subscriber, t *Tag) {
		if _, ok := sub.tags[t.ID]; !ok {
			s.tag(sub, t)
		}
	})
}

// UntagSubscriber removes a tag by hand.
func (s *Server) UntagSubscriber(email string, tagID int64) error {
	return s.edit(email, tagID, func(sub *subscriber, t *Tag) { s.untag(sub, t) })
}

// Unsubscribe cancels a subscriber, as the subscriber's own unsubscribe click would.
func (s *Server) Unsubscribe(email string) error {
	return s.edit(email, 0, func(sub *subscriber, _ *Tag) { s.unsubscribeLocked(sub) })
}

func (s *Server) edit(email string, tagID int64, f func(*subscriber, *Tag)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.byAddress(email)
	if sub == nil {
		return fmt.Errorf("kitsim: no subscriber %q", email)
	}
	var t *Tag
	if tagID != 0 {
		if t = s.tags[tagID]; t == nil {
			return fmt.Errorf("kitsim: tag %d does not exist", tagID)
		}
	}
	f(sub, t)
	return nil
}

// CreateTag adds a tag (ID 0 picks one) and returns it.
func (s *Server) CreateTag(t Tag) Tag {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addTag(t)
}

// CreateField adds a custom field by label and returns its key.
func (s *Server) CreateField(label string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addField(label).key
}
