package circlesim

import (
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
	out.Requests = make(map[string]int, len(s.Requests))
	for k, v := range s.Requests {
		out.Requests[k] = v
	}
	return out
}

// TotalRequests sums Requests.
func (s Stats) TotalRequests() int {
	n := 0
	for _, v := range s.Requests {
		n += v
	}
	return n
}

// adminRoutes serves /_sim/: GET stats, GET|POST faults (query parameters
// throttle, errors, drop, drop_after_apply, slow, delay, storm), POST reset.
func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_sim/stats", func(w http.ResponseWriter, r *http.Request) {
		simfault.WriteJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		simfault.WriteJSON(w, http.StatusOK, s.inj.Get())
	})
	mux.HandleFunc("POST /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		f, storm, err := simfault.ParseFaults(s.inj.Get(), r)
		if err == nil {
			err = f.Validate()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.SetFaults(f)
		if storm > 0 {
			s.Storm(storm)
		}
		simfault.WriteJSON(w, http.StatusOK, f)
	})
	mux.HandleFunc("POST /_sim/reset", func(w http.ResponseWriter, r *http.Request) {
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	})
}
