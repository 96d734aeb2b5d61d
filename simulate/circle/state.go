package circlesim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"
)

type group struct {
	Ref
	createdAt time.Time
}

type tagDef struct {
	Ref
	createdAt time.Time
}

type profileField struct {
	id        int64
	key       string
	createdAt time.Time
}

// record is one tagging or access-group membership.
type record struct {
	id int64
	at time.Time
}

type member struct {
	id, userID           int64
	email, name          string
	headline, ssoUserID  string
	active               bool
	acceptedInvitation   string
	invited              bool
	createdAt, updatedAt time.Time
	tags                 map[int64]record // member tag id → tagging
	groups               map[int64]record // access group id → membership
	fields               map[string]string
}

// Member is a community member's state as the Go API returns it.
type Member struct {
	ID, UserID int64
	Email      string
	Name       string
	Active     bool
	// Invited is true when the community sent this member an invitation email.
	Invited              bool
	SSOUserID            string
	CreatedAt, UpdatedAt time.Time
	// Tags and AccessGroups hold ids, ascending.
	Tags, AccessGroups []int64
	// Fields holds the profile fields that have a value, by key.
	Fields map[string]string
}

// MemberSeed is a member added directly (AddMember), as if they had joined.
type MemberSeed struct {
	Email, Name, SSOUserID string
	Tags, AccessGroups     []int64
	Fields                 map[string]string
}

func (s *Server) recordID() int64 {
	s.nextRecID++
	return s.nextRecID
}

// touch marks a member changed. The document does not say which changes move
// updated_at; the simulator moves it on every change, tags and access groups
// included, so a poller sees them.
func (s *Server) touch(m *member) {
	t := s.now().UTC().Truncate(time.Millisecond)
	if !t.After(m.updatedAt) {
		t = m.updatedAt.Add(time.Millisecond)
	}
	m.updatedAt = t
}

func (s *Server) byAddress(email string) *member {
	if id, ok := s.byEmail[normEmail(email)]; ok {
		return s.members[id]
	}
	return nil
}

func (s *Server) hasField(key string) bool {
	for _, f := range s.fields {
		if f.key == key {
			return true
		}
	}
	return false
}

// checkRefs reports the first unknown tag, access group or profile field.
func (s *Server) checkRefs(tags, groups []int64, fields map[string]string) error {
	for _, id := range tags {
		if s.tags[id] == nil {
			return fmt.Errorf("member tag %d", id)
		}
	}
	for _, id := range groups {
		if s.groups[id] == nil {
			return fmt.Errorf("access group %d", id)
		}
	}
	for k := range fields {
		if !s.hasField(k) {
			return fmt.Errorf("profile field %q", k)
		}
	}
	return nil
}

// create adds a member; the caller holds s.mu and has checked the refs.
func (s *Server) create(email, name, sso string, active bool, tags []int64, fields map[string]string) *member {
	s.nextID++
	now := s.now().UTC().Truncate(time.Millisecond)
	m := &member{
		id: s.nextID, userID: s.nextID + 50000, email: strings.TrimSpace(email), name: name, ssoUserID: sso,
		active: active, createdAt: now, updatedAt: now,
		tags: map[int64]record{}, groups: map[int64]record{}, fields: map[string]string{},
	}
	if m.name == "" {
		m.name = strings.SplitN(m.email, "@", 2)[0]
	}
	if active {
		m.acceptedInvitation = now.Format("2006-01-02 15:04:05 UTC")
	}
	for _, id := range tags {
		m.tags[id] = record{id: s.recordID(), at: now}
	}
	s.setFields(m, fields)
	s.members[m.id] = m
	s.byEmail[normEmail(email)] = m.id
	s.stats.MembersCreated++
	return m
}

func (s *Server) setFields(m *member, fields map[string]string) {
	for k, v := range fields {
		if v == "" {
			delete(m.fields, k)
		} else {
			m.fields[k] = v
		}
	}
}

func (m *member) publicUID() string {
	sum := sha256.Sum256([]byte(fmt.Sprint(m.id)))
	return hex.EncodeToString(sum[:4])
}

func (m *member) export() Member {
	out := Member{ID: m.id, UserID: m.userID, Email: m.email, Name: m.name, Active: m.active, Invited: m.invited, SSOUserID: m.ssoUserID, CreatedAt: m.createdAt, UpdatedAt: m.updatedAt, Fields: map[string]string{}}
	for k, v := range m.fields {
		out.Fields[k] = v
	}
	out.Tags = sortedKeys(m.tags)
	out.AccessGroups = sortedKeys(m.groups)
	return out
}

func sortedKeys(m map[int64]record) []int64 {
	out := make([]int64, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// AddMember adds an active member directly (no invitation email), as if they
// had joined through the community's own sign-up. Unknown ids are an error.
func (s *Server) AddMember(seed MemberSeed) (Member, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byAddress(seed.Email) != nil {
		return Member{}, fmt.Errorf("circlesim: member %q exists", seed.Email)
	}
	if err := s.checkRefs(seed.Tags, seed.AccessGroups, seed.Fields); err != nil {
		return Member{}, fmt.Errorf("circlesim: unknown %w", err)
	}
	m := s.create(seed.Email, seed.Name, seed.SSOUserID, true, seed.Tags, seed.Fields)
	for _, id := range seed.AccessGroups {
		m.groups[id] = record{id: s.recordID(), at: m.createdAt}
	}
	return m.export(), nil
}

// Member returns the member with email (case-insensitive).
func (s *Server) Member(email string) (Member, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byAddress(email)
	if m == nil {
		return Member{}, false
	}
	return m.export(), true
}

// Members returns every member, by id.
func (s *Server) Members() []Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Member, 0, len(s.members))
	for _, m := range s.members {
		out = append(out, m.export())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Edit changes a member by hand, as an admin in Circle's UI would (nothing
// is counted as a duplicate): tags and access groups to add or remove,
// profile fields to set ("" clears), a new name, or accepting the invitation.
type Edit struct {
	AddTags, RemoveTags     []int64
	AddGroups, RemoveGroups []int64
	Fields                  map[string]string
	Name                    string
	Accept                  bool
}

// EditMember applies e to the member with email and moves its updated_at.
func (s *Server) EditMember(email string, e Edit) (Member, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byAddress(email)
	if m == nil {
		return Member{}, fmt.Errorf("circlesim: no member %q", email)
	}
	if err := s.checkRefs(append(e.AddTags, e.RemoveTags...), append(e.AddGroups, e.RemoveGroups...), e.Fields); err != nil {
		return Member{}, fmt.Errorf("circlesim: unknown %w", err)
	}
	now := s.now().UTC()
	for _, id := range e.AddTags {
		if _, ok := m.tags[id]; !ok {
			m.tags[id] = record{id: s.recordID(), at: now}
		}
	}
	for _, id := range e.RemoveTags {
		delete(m.tags, id)
	}
	for _, id := range e.AddGroups {
		if _, ok := m.groups[id]; !ok {
			m.groups[id] = record{id: s.recordID(), at: now}
		}
	}
	for _, id := range e.RemoveGroups {
		delete(m.groups, id)
	}
	s.setFields(m, e.Fields)
	if e.Name != "" {
		m.name = e.Name
	}
	if e.Accept && !m.active {
		m.active = true
		m.acceptedInvitation = now.Format("2006-01-02 15:04:05 UTC")
	}
	s.touch(m)
	return m.export(), nil
}
