package alerts

import (
	"sort"
	"strings"
	"time"
)

// Sample is one rule's verdict on one series (a provider, a consumer group,
// a slot, or the whole pipeline when Labels is empty) at one evaluation.
//
// Firing and Clear are separate so a rule can leave a band between them:
// a value between the resolve and the fire threshold changes nothing, which
// keeps an alert near its threshold from flapping.
type Sample struct {
	Labels string  // e.g. "provider=stripe"; "" for a pipeline-wide alert
	Value  float64 // the measured value, for the message and tests
	Firing bool    // the fire condition holds
	Clear  bool    // the resolve condition holds
	Text   string  // what was measured, in words
}

// Transition is an alert changing state: what gets posted.
type Transition struct {
	Alert   string    `json:"alert"`
	Summary string    `json:"summary"`
	Labels  string    `json:"labels,omitempty"`
	State   string    `json:"state"` // firing or resolved
	Text    string    `json:"text"`
	Value   float64   `json:"value"`
	At      time.Time `json:"at"`
	Since   time.Time `json:"since"` // when it fired (for resolved)
}

// Alert states.
const (
	StateInactive  = "inactive"
	StatePending   = "pending"   // the fire condition holds, not yet for long enough
	StateFiring    = "firing"    // posted as firing
	StateResolving = "resolving" // firing, and the resolve condition holds, not yet for long enough
	StateResolved  = "resolved"
)

// Status is one series' current state, for `launchready alerts --once` and tests.
type Status struct {
	Alert  string    `json:"alert"`
	Labels string    `json:"labels,omitempty"`
	State  string    `json:"state"`
	Value  float64   `json:"value"`
	Text   string    `json:"text"`
	Since  time.Time `json:"since"`
}

type series struct {
	state   string
	since   time.Time // entered the current state
	firedAt time.Time
	last    Sample
}

// machine holds every series' state. It is used by one goroutine.
type machine struct {
	series map[string]*series // by alert + "\x00" + labels
}

func newMachine() *machine { return &machine{series: map[string]*series{}} }

// apply advances one rule's series with the samples of an evaluation at now
// and returns the transitions to post. A series that fires must have held
// its fire condition for at least pendingFor; a firing series resolves once
// its resolve condition held for keepFiring. A series the rule no longer
// reports is treated as clear.
func (m *machine) apply(r *rule, samples []Sample, keepFiring time.Duration, now time.Time) []Transition {
	seen := map[string]bool{}
	var out []Transition
	step := func(key string, s Sample) {
		st := m.series[key]
		if st == nil {
			st = &series{state: StateInactive, since: now}
			m.series[key] = st
		}
		st.last = s
		switch st.state {
		case StateInactive:
			if s.Firing {
				st.state, st.since = StatePending, now
			}
		case StateResolving:
			if !s.Clear {
				st.state, st.since = StateFiring, now
			}
		case StateFiring:
			if s.Clear {
				st.state, st.since = StateResolving, now
			}
		case StatePending:
			if !s.Firing {
				st.state, st.since = StateInactive, now
			}
		}
		// Durations are checked after the state change so that zero
		// durations act within the same evaluation.
		switch {
		case st.state == StatePending && now.Sub(st.since) >= r.pendingFor:
			st.state, st.since, st.firedAt = StateFiring, now, now
			out = append(out, Transition{Alert: r.name, Summary: r.summary, Labels: s.Labels, State: StateFiring, Text: s.Text, Value: s.Value, At: now, Since: now})
		case st.state == StateResolving && now.Sub(st.since) >= keepFiring:
			out = append(out, Transition{Alert: r.name, Summary: r.summary, Labels: s.Labels, State: StateResolved, Text: s.Text, Value: s.Value, At: now, Since: st.firedAt})
			st.state, st.since = StateInactive, now
		}
	}
	for _, s := range samples {
		key := r.name + "\x00" + s.Labels
		seen[key] = true
		step(key, s)
	}
	var gone []string
	for key := range m.series {
		if strings.HasPrefix(key, r.name+"\x00") && !seen[key] {
			gone = append(gone, key)
		}
	}
	sort.Strings(gone)
	for _, key := range gone {
		st := m.series[key]
		if st.state == StateInactive {
			delete(m.series, key)
			continue
		}
		s := st.last
		s.Firing, s.Clear = false, true
		if !strings.HasPrefix(s.Text, "no longer measured: ") {
			s.Text = "no longer measured: " + s.Text
		}
		step(key, s)
	}
	return out
}

// statuses lists every series that is not inactive, sorted.
func (m *machine) statuses() []Status {
	var out []Status
	for key, st := range m.series {
		if st.state == StateInactive {
			continue
		}
		name, labels, _ := strings.Cut(key, "\x00")
		out = append(out, Status{Alert: name, Labels: labels, State: st.state, Value: st.last.Value, Text: st.last.Text, Since: st.since})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Alert != out[j].Alert {
			return out[i].Alert < out[j].Alert
		}
		return out[i].Labels < out[j].Labels
	})
	return out
}
