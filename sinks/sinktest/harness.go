package sinktest

import (
	"testing"

	circlesim "github.com/launchready/launchready/simulate/circle"
	kitsim "github.com/launchready/launchready/simulate/kit"
	"github.com/launchready/launchready/sinks"
)

// KitHarness wires provider p to the Kit simulator sim.
func KitHarness(sim *kitsim.Server, p sinks.Provider) Harness {
	return Harness{
		Provider:   p,
		Writes:     func() int { return sim.Stats().Writes },
		Duplicates: func() int { return sim.Stats().DuplicateTags },
		Violations: func() int { return sim.Stats().Violations },
		Injected:   func() int { return sim.Stats().Injected },
		Seed: func(t *testing.T, email string, tags, _ []int64, fields map[string]string) {
			t.Helper()
			if _, err := sim.AddSubscriber(email, "", tags, fields); err != nil {
				t.Fatal(err)
			}
		},
		Observe: func(_ *testing.T, email string) Observed { return ObserveKit(sim, email) },
		Faults: func(errRate, dropRate float64) {
			sim.SetFaults(kitsim.Faults{Errors: errRate, Drop: dropRate, DropAfterApply: true})
		},
	}
}

// ObserveKit reads a subscriber through the simulator's Go API.
func ObserveKit(sim *kitsim.Server, email string) Observed {
	s, ok := sim.Subscriber(email)
	if !ok {
		return Observed{}
	}
	o := Observed{Found: true, Tags: map[int64]bool{}, Groups: map[int64]bool{}, Fields: s.Fields}
	for _, id := range s.Tags {
		o.Tags[id] = true
	}
	return o
}

// CircleHarness wires provider p to the Circle simulator sim.
func CircleHarness(sim *circlesim.Server, p sinks.Provider) Harness {
	return Harness{
		Provider: p,
		Writes:   func() int { return sim.Stats().Writes },
		Duplicates: func() int {
			st := sim.Stats()
			return st.DuplicateTags + st.DuplicateGroupAdds
		},
		Violations: func() int { return sim.Stats().Violations },
		Injected:   func() int { return sim.Stats().Injected },
		Seed: func(t *testing.T, email string, tags, groups []int64, fields map[string]string) {
			t.Helper()
			if _, ok := sim.Member(email); ok {
				if _, err := sim.EditMember(email, circlesim.Edit{AddTags: tags, AddGroups: groups, Fields: fields}); err != nil {
					t.Fatal(err)
				}
				return
			}
			if _, err := sim.AddMember(circlesim.MemberSeed{Email: email, Tags: tags, AccessGroups: groups, Fields: fields}); err != nil {
				t.Fatal(err)
			}
		},
		Observe: func(_ *testing.T, email string) Observed { return ObserveCircle(sim, email) },
		Faults: func(errRate, dropRate float64) {
			sim.SetFaults(circlesim.Faults{Errors: errRate, Drop: dropRate, DropAfterApply: true})
		},
	}
}

// ObserveCircle reads a member through the simulator's Go API.
func ObserveCircle(sim *circlesim.Server, email string) Observed {
	mb, ok := sim.Member(email)
	if !ok {
		return Observed{}
	}
	o := Observed{Found: true, Tags: map[int64]bool{}, Groups: map[int64]bool{}, Fields: mb.Fields}
	for _, id := range mb.Tags {
		o.Tags[id] = true
	}
	for _, id := range mb.AccessGroups {
		o.Groups[id] = true
	}
	if mb.Invited {
		o.Invited = 1
	}
	return o
}
