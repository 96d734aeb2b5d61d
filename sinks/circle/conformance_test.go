package circle_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/mapping"
	circlesim "github.com/launchready/launchready/simulate/circle"
	"github.com/launchready/launchready/sinks/circle"
	"github.com/launchready/launchready/sinks/sinktest"
)

const unmanagedTag = 2999

// newSim starts a Circle simulator seeded from m (plus one unmanaged tag)
// and a sink pointed at it with fast retries.
func newSim(t *testing.T, m *mapping.Mapping, o circlesim.Options) (*circlesim.Server, *circle.Sink) {
	groups, tags, fields := circlesim.Seed(m)
	o.AccessGroups, o.MemberTags, o.ProfileFields, o.Seed = groups, append(tags, circlesim.Ref{ID: unmanagedTag, Name: "speaker"}), fields, 7
	sim := circlesim.New(o)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	return sim, circle.New(circle.Options{
		BaseURL: srv.URL + circlesim.Base, Token: config.Secret(sim.Token()), Scheme: "Token",
		StampField: m.Circle.ProfileFields.Synced,
		MaxRetries: 12, RetryWaitMin: time.Millisecond, RetryWaitMax: 20 * time.Millisecond,
	})
}

func TestConformance(t *testing.T) {
	t.Parallel()
	m, err := mapping.Example()
	if err != nil {
		t.Fatal(err)
	}
	sinktest.Run(t, sinktest.Suite{Mapping: m, UnmanagedTag: unmanagedTag, New: func(t *testing.T) sinktest.Harness {
		return sinktest.CircleHarness(newSim(t, m, circlesim.Options{}))
	}})
}
