package dashboards

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/ingest"
	"github.com/launchready/launchready/ingest/cdc"
	"github.com/launchready/launchready/internal/alerts"
	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/sinks"
	"github.com/launchready/launchready/sinks/audit"

	// Registers launchready_provider_* (the outbound client of the sinks).
	_ "github.com/launchready/launchready/internal/httpx"
)

// Keep the stage packages linked: their init functions register metrics.
var _ = []any{ingest.New, sinks.New, audit.New}

// isRegistered reports whether obs.Registry has a metric named name: a
// probe collector of that name is refused when one exists (with or without
// children, so counters no request has touched yet are found too).
func isRegistered(name string) bool {
	probe := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: "probe"}, []string{"probe_only_label"})
	if err := obs.Registry.Register(probe); err != nil {
		var are prometheus.AlreadyRegisteredError
		return errors.As(err, &are) || strings.Contains(err.Error(), "same fully-qualified name")
	}
	obs.Registry.Unregister(probe)
	return false
}

// Every launchready_… name used by a dashboard or an alert rule is a metric
// the stages really register on obs.Registry (histogram series by their base
// name), so no panel or rule watches a name nobody exports.
func TestDashboardMetricsAreRegistered(t *testing.T) {
	// Not parallel: probes register and unregister on the shared registry.
	cfg, err := config.LoadFrom(func(string) (string, bool) { return "", false }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The CDC stage registers its metrics when it is built (without connecting).
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := cdc.New(&app.Env{Cfg: cfg, Log: log, Health: obs.NewHealth(), Mux: http.NewServeMux()}, cdc.Options{}); err != nil {
		t.Fatal(err)
	}
	// The ops page exports the launchready_ops_* gauges from the audit trail.
	alerts.ExportGauges(nil, "", alerts.DefaultThresholds(), nil)

	names := metricNames(t)
	if len(names) < 15 {
		t.Fatalf("only %d metric names found: %v", len(names), names)
	}
	for _, n := range names {
		base := n
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(n, suffix); ok && !isRegistered(n) {
				base = b
			}
		}
		if !isRegistered(base) {
			t.Errorf("%s is used by a dashboard or alert rule but no stage registers it", n)
		}
	}
	if isRegistered("launchready_no_such_metric_total") {
		t.Fatal("the probe finds names that are not registered")
	}
}
