package kit_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/mapping"
	kitsim "github.com/launchready/launchready/simulate/kit"
	"github.com/launchready/launchready/sinks/kit"
	"github.com/launchready/launchready/sinks/sinktest"
)

const unmanagedTag = 4999

// newSim starts a Kit simulator seeded from m (plus one unmanaged tag) and
// a sink pointed at it with fast retries.
func newSim(t *testing.T, m *mapping.Mapping, o kitsim.Options) (*kitsim.Server, *kit.Sink) {
	tags, fields := kitsim.Seed(m)
	o.Tags, o.Fields, o.Seed = append(tags, kitsim.Tag{ID: unmanagedTag, Name: "newsletter"}), fields, 7
	sim := kitsim.New(o)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return sim, kit.New(kit.Options{
		BaseURL: srv.URL + "/v4", APIKey: config.Secret(sim.APIKey()),
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
		return sinktest.KitHarness(newSim(t, m, kitsim.Options{}))
	}})
}
