package circlesim

import (
	"maps"
	"net/http"

	"github.com/launchready/launchready/simulate/internal/simfault"
)

// Faults are the failures the simulator injects (see simfault.Faults).
type Faults = simfault.Faults

type fault = simfault.Fault

const (
	faultNone     = simfault.None
	faultThrottle = simfault.Throttle
	faultError    = simfault.Error
	faultDrop     = simfault.Drop
)

func newInjector(f Faults, seed uint64) *simfault.Injector { return simfault.NewInjector(f, seed) }

// Stats are the simulator's counters, for tests and the demo.
type Stats struct {
	// Requests by route, e.g. "POST /api/admin/v2/tagged_members".
	Requests map[string]int `json:"requests"`
	// Writes counts authenticated write requests (any method but GET),
	// whatever their outcome.
	Writes int `json:"writes"`
	// Throttled counts 429 answers: Violations plus injected ones.
	Throttled int `json:"throttled"`
	// Violations counts requests that arrived while the client IP was over its limit.
	Violations   int `json:"violations"`
	Injected     int `json:"injected"`
	Unauthorized int `json:"unauthorized"`
	// DuplicateTags and DuplicateGroupAdds count writes of something the
	// member already had.
	DuplicateTags      int `json:"duplicate_tags"`
	DuplicateGroupAdds int `json:"duplicate_access_group_adds"`
	MembersCreated     int `json:"members_created"`
	// Invitations counts invitation (welcome) emails the community sent.
	Invitations int `json:"invitations"`
}

func (s Stats) clone() Stats {
	out := s
	out.Requests = maps.Clone(s.Requests)
	return out
}

// TotalRequests sums Requests.
func (s Stats) TotalRequests() int { return simfault.Sum(s.Requests) }

// adminRoutes serves /_sim/ (see simfault.AdminRoutes).
func (s *Server) adminRoutes(mux *http.ServeMux) {
	simfault.AdminRoutes(mux, simfault.Admin{
		Stats: func() any { return s.Stats() }, Faults: s.inj,
		SetFaults: s.SetFaults, Storm: s.Storm, Reset: s.ResetStats,
	})
}
