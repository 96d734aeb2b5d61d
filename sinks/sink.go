// Package sinks pushes entitlements back to the tools the customer sees
// (Circle, Kit). For each customer a Worker reads the provider's current
// state, computes the difference with the state the mapping wants (Diff),
// and pushes only that difference, recording every action in
// lr.sink.results and every permanent failure in lr.dlq. Because each sync
// starts from a fresh read, replaying entitlements or crashing between a
// provider call and the result write never repeats a write that took effect.
//
// The provider-specific halves live in sinks/kit and sinks/circle; the
// conformance suite both pass is sinks/sinktest.
package sinks

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/schemas"
)

// State is what a provider holds for one customer, as read before a sync.
type State struct {
	// Found is false when the provider has no such customer.
	Found bool
	// ID is the provider's id of the customer (Kit subscriber, Circle
	// member), and Email the address the provider holds for it.
	ID, Email string
	// Tags and Groups hold the provider ids the customer has.
	Tags, Groups map[int64]bool
	// Fields holds every custom or profile field the provider account
	// defines, with the customer's value ("" when unset). A key absent here
	// does not exist in the account and cannot be written.
	Fields map[string]string
}

// Target is the part of the desired state one provider holds, and what the
// provider's create call can carry.
type Target struct {
	Tags, ManagedTags     []mapping.Ref
	Groups, ManagedGroups []mapping.Ref
	Fields                map[string]string
	// Stamp names a field that is written along with any other field write
	// (or a create) but is never a reason to write: Circle's "last synced at"
	// would otherwise make every sync a write.
	Stamp string
	// Create allows creating the customer when the provider has none.
	Create bool
	// CreateTags and CreateFields say whether the create call carries the
	// tags and fields; otherwise they follow as separate actions.
	CreateTags, CreateFields bool
}

// Action kinds. A provider may name its create action differently in
// results (Kit: upsert_subscriber, Circle: create_member).
const (
	ActCreate      = "create"
	ActTag         = "tag"
	ActUntag       = "untag"
	ActAddGroup    = "add_access_group"
	ActRemoveGroup = "remove_access_group"
	ActSetFields   = "set_fields"
	ActNoop        = "noop"
	ActRead        = "read"
	ActNone        = "none"
)

// Action is one write a sync needs.
type Action struct {
	Kind string
	// Ref is the tag or access group of tag, untag and group actions.
	Ref mapping.Ref
	// Tags and Fields are what a create carries; Fields is also the
	// changed fields of set_fields (the stamp included).
	Tags   []mapping.Ref
	Fields map[string]string
	// Changes counts the desired items the action brings about (a tag, a
	// group, a changed field; a create counts 1 plus what it carries).
	Changes int
}

// Target names what the action touches, for results: the provider's id of
// the tag or group (the reconciler reads it back as an observation), the
// sorted field keys of a field write or a create. Once a create succeeded,
// its result names the id the provider gave the customer instead (Worker).
func (a Action) Target() string {
	switch a.Kind {
	case ActTag, ActUntag, ActAddGroup, ActRemoveGroup:
		return strconv.FormatInt(a.Ref.ID, 10)
	case ActSetFields, ActCreate:
		keys := make([]string, 0, len(a.Fields))
		for k := range a.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return strings.Join(keys, ",")
	}
	return ""
}

// Diff returns the writes that bring st to t, in the order they should run:
// grants before revocations, so a plan change never leaves a gap in access.
// A customer the provider lacks yields at most one create (when t allows
// it); the rest is diffed again against the state the create returns.
func Diff(st State, t Target) []Action {
	if !st.Found {
		if !t.Create {
			return nil
		}
		a := Action{Kind: ActCreate, Changes: 1}
		if t.CreateTags && len(t.Tags) > 0 {
			a.Tags = sortedRefs(t.Tags)
			a.Changes += len(a.Tags)
		}
		if t.CreateFields {
			a.Fields = map[string]string{}
			for k, v := range t.Fields {
				if v == "" {
					continue
				}
				a.Fields[k] = v
				if k != t.Stamp {
					a.Changes++
				}
			}
		}
		return []Action{a}
	}
	var acts []Action
	for _, g := range sortedRefs(t.Groups) {
		if !st.Groups[g.ID] {
			acts = append(acts, Action{Kind: ActAddGroup, Ref: g, Changes: 1})
		}
	}
	for _, tg := range sortedRefs(t.Tags) {
		if !st.Tags[tg.ID] {
			acts = append(acts, Action{Kind: ActTag, Ref: tg, Changes: 1})
		}
	}
	if f := changedFields(st, t); len(f) > 0 {
		n := len(f)
		if _, known := st.Fields[t.Stamp]; known && t.Stamp != "" {
			if v, ok := t.Fields[t.Stamp]; ok {
				f[t.Stamp] = v
			}
		}
		acts = append(acts, Action{Kind: ActSetFields, Fields: f, Changes: n})
	}
	for _, tg := range sortedRefs(revoked(t.ManagedTags, t.Tags)) {
		if st.Tags[tg.ID] {
			acts = append(acts, Action{Kind: ActUntag, Ref: tg, Changes: 1})
		}
	}
	for _, g := range sortedRefs(revoked(t.ManagedGroups, t.Groups)) {
		if st.Groups[g.ID] {
			acts = append(acts, Action{Kind: ActRemoveGroup, Ref: g, Changes: 1})
		}
	}
	return acts
}

// changedFields returns the desired fields (but the stamp) whose value
// differs from st. Fields the account does not define are left out: the
// provider's Check reports them at start.
func changedFields(st State, t Target) map[string]string {
	out := map[string]string{}
	for k, v := range t.Fields {
		if k == t.Stamp {
			continue
		}
		cur, known := st.Fields[k]
		if known && cur != v {
			out[k] = v
		}
	}
	return out
}

// Assume changes st as if a had succeeded: what a dry run shows next, and
// what a real run knows after a write the provider acknowledged.
func (st *State) Assume(a Action) {
	if st.Tags == nil {
		st.Tags = map[int64]bool{}
	}
	if st.Groups == nil {
		st.Groups = map[int64]bool{}
	}
	if st.Fields == nil {
		st.Fields = map[string]string{}
	}
	switch a.Kind {
	case ActCreate:
		st.Found = true
		for _, t := range a.Tags {
			st.Tags[t.ID] = true
		}
		for k, v := range a.Fields {
			st.Fields[k] = v
		}
	case ActTag:
		st.Tags[a.Ref.ID] = true
	case ActUntag:
		delete(st.Tags, a.Ref.ID)
	case ActAddGroup:
		st.Groups[a.Ref.ID] = true
	case ActRemoveGroup:
		delete(st.Groups, a.Ref.ID)
	case ActSetFields:
		for k, v := range a.Fields {
			st.Fields[k] = v
		}
	}
}

// AssumeCreated is Assume for a create in a dry run, where the account's
// fields are not known: every desired field is taken to exist, unset unless
// the create carried it.
func (st *State) AssumeCreated(a Action, t Target) {
	st.Assume(a)
	for k := range t.Fields {
		if _, ok := st.Fields[k]; !ok {
			st.Fields[k] = ""
		}
	}
}

func revoked(managed, desired []mapping.Ref) []mapping.Ref {
	want := map[int64]bool{}
	for _, r := range desired {
		want[r.ID] = true
	}
	var out []mapping.Ref
	for _, r := range managed {
		if !want[r.ID] {
			out = append(out, r)
		}
	}
	return out
}

func sortedRefs(refs []mapping.Ref) []mapping.Ref {
	out := append([]mapping.Ref(nil), refs...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Outcome is what one provider call returned.
type Outcome struct {
	HTTPStatus int
	Attempts   int
	// Refreshed means Apply replaced the State with what the provider
	// answered (a create does); otherwise the worker calls State.Assume.
	Refreshed bool
	// Note explains a success that was not a plain one, e.g. "already absent".
	Note string
}

// Provider is one downstream system. Implementations are safe for
// concurrent use by different customers.
type Provider interface {
	// Name is the provider in results, metrics and consumer groups: kit, circle.
	Name() string
	// CreateAction names the create action in results.
	CreateAction() string
	// Target picks the provider's part of the desired state of e.
	Target(d mapping.Desired, e *schemas.Entitlement) Target
	Reader
	Applier
}

// Reader reads a customer's current state.
type Reader interface {
	// Read returns what the provider holds for e's customer (Found false
	// when it has none), as far as t needs it (a provider may skip reading
	// what t does not manage). It blocks, retries transient failures itself,
	// and makes no change: it is idempotent.
	Read(ctx context.Context, e *schemas.Entitlement, t Target) (State, Outcome, error)
}

// Applier performs writes.
type Applier interface {
	// Apply performs a, an action Diff computed from st, and blocks until
	// the provider answered. It is not idempotent in general (a tag sent
	// twice is a duplicate tag), which is why every sync starts from Read.
	// With Outcome.Refreshed it has updated *st itself.
	Apply(ctx context.Context, e *schemas.Entitlement, st *State, a Action) (Outcome, error)
}

// Checker is implemented by providers that can verify, at start, that every
// tag, group and field the mapping names exists in the account.
type Checker interface {
	// Check reads the provider's definitions and returns an error naming
	// every missing one. Read-only.
	Check(ctx context.Context, m *mapping.Mapping) error
}
