package sinks

import (
	"reflect"
	"testing"

	"github.com/launchready/launchready/internal/mapping"
)

var (
	pro     = mapping.Ref{ID: 1, Name: "pro"}
	starter = mapping.Ref{ID: 2, Name: "starter"}
	refund  = mapping.Ref{ID: 3, Name: "refunded"}
	grpPro  = mapping.Ref{ID: 10, Name: "Pro"}
	grpSt   = mapping.Ref{ID: 11, Name: "Starter"}
)

func set(ids ...int64) map[int64]bool {
	m := map[int64]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func kinds(acts []Action) []string {
	var out []string
	for _, a := range acts {
		out = append(out, a.Kind+" "+a.Target())
	}
	return out
}

func TestDiff(t *testing.T) {
	t.Parallel()
	managed := []mapping.Ref{pro, starter, refund}
	groups := []mapping.Ref{grpPro, grpSt}
	fields := map[string]string{"plan": "pro", "status": "active", "synced": "2026-03-02T10:00:00Z"}
	for _, tc := range []struct {
		name    string
		st      State
		t       Target
		want    []string
		changes int
	}{
		{
			name: "absent and not creatable: nothing",
			t:    Target{Tags: []mapping.Ref{refund}, ManagedTags: managed},
		},
		{
			name:    "absent: one create carrying tags and non-empty fields (stamp counts no change)",
			t:       Target{Tags: []mapping.Ref{pro}, ManagedTags: managed, Fields: map[string]string{"plan": "pro", "renewal": "", "synced": "x"}, Stamp: "synced", Create: true, CreateTags: true, CreateFields: true},
			want:    []string{"create plan,synced"},
			changes: 3,
		},
		{
			name:    "absent, create carries nothing",
			t:       Target{Tags: []mapping.Ref{pro}, Fields: map[string]string{"plan": "pro"}, Create: true},
			want:    []string{"create "},
			changes: 1,
		},
		{
			name:    "plan change: grants first, groups before tags, then fields, then revocations",
			st:      State{Found: true, Tags: set(2), Groups: set(11), Fields: map[string]string{"plan": "starter", "status": "active", "synced": "old"}},
			t:       Target{Tags: []mapping.Ref{pro}, ManagedTags: managed, Groups: []mapping.Ref{grpPro}, ManagedGroups: groups, Fields: fields, Stamp: "synced"},
			want:    []string{"add_access_group 10", "tag 1", "set_fields plan,synced", "untag 2", "remove_access_group 11"},
			changes: 5,
		},
		{
			name: "in sync but the stamp: nothing",
			st:   State{Found: true, Tags: set(1, 99), Groups: set(10), Fields: map[string]string{"plan": "pro", "status": "active", "synced": "old"}},
			t:    Target{Tags: []mapping.Ref{pro}, ManagedTags: managed, Groups: []mapping.Ref{grpPro}, ManagedGroups: groups, Fields: fields, Stamp: "synced"},
		},
		{
			name:    "unset equals empty; fields the account lacks are not written",
			st:      State{Found: true, Fields: map[string]string{"plan": "", "status": "x"}},
			t:       Target{Fields: map[string]string{"plan": "", "status": "y", "renewal": "2026-04-02"}},
			want:    []string{"set_fields status"},
			changes: 1,
		},
		{
			name:    "refund: revocations and the status tag",
			st:      State{Found: true, Tags: set(1, 99), Fields: map[string]string{}},
			t:       Target{Tags: []mapping.Ref{refund}, ManagedTags: managed},
			want:    []string{"tag 3", "untag 1"},
			changes: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			acts := Diff(tc.st, tc.t)
			if got := kinds(acts); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Diff = %q, want %q", got, tc.want)
			}
			n := 0
			for _, a := range acts {
				n += a.Changes
			}
			if n != tc.changes {
				t.Errorf("changes = %d, want %d", n, tc.changes)
			}
			// Applying the actions reaches a state with nothing left to do.
			st := tc.st
			for _, a := range acts {
				if a.Kind == ActCreate {
					st.AssumeCreated(a, tc.t)
				} else {
					st.Assume(a)
				}
			}
			if rest := Diff(st, tc.t); len(rest) != 0 && !(len(acts) > 0 && acts[0].Kind == ActCreate && !tc.t.CreateTags) {
				t.Errorf("after applying, Diff = %q, want nothing", kinds(rest))
			}
		})
	}
}
