package dashboards

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// promtool finds Debian's promtool (scripts/tools.sh installs it). With
// -short a missing promtool skips; otherwise it fails the test.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if testing.Short() {
			t.Skip("promtool not installed (scripts/tools.sh installs it); skipped with -short")
		}
		t.Fatal("promtool not found: run scripts/tools.sh (installs Debian's prometheus package)")
	}
	return p
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool %s did not report SUCCESS:\n%s", strings.Join(args, " "), out)
	}
}

// inputSeries are the series the dashboard expressions are evaluated on,
// named and labelled as the stages export them (metrics_test.go checks the
// names are registered). One sample a minute for 30 minutes; counters grow
// at a constant rate, so rate() over 5m is exact.
var inputSeries = map[string]string{
	`launchready_ingest_received_total{provider="stripe"}`:                                     "0+60x30",
	`launchready_ingest_received_total{provider="kit"}`:                                        "0+120x30",
	`launchready_ingest_rejected_total{provider="stripe",reason="signature"}`:                  "0+3x30",
	`launchready_ingest_unavailable_total{provider="stripe"}`:                                  "0+3x30",
	`launchready_ingest_rejected_total{provider="kit",reason="stale"}`:                         "0+6x30",
	`launchready_ingest_records_total{provider="stripe",source="webhook"}`:                     "0+60x30",
	`launchready_ingest_records_total{provider="kit",source="webhook"}`:                        "0+120x30",
	`launchready_ingest_duplicates_total{provider="stripe",source="webhook"}`:                  "0+6x30",
	`launchready_ingest_duplicates_total{provider="kit",source="webhook"}`:                     "0+6x30",
	`launchready_ingest_request_seconds_bucket{provider="stripe",code="200",le="0.004"}`:       "0x30",
	`launchready_ingest_request_seconds_bucket{provider="stripe",code="200",le="0.008"}`:       "0+30x30",
	`launchready_ingest_request_seconds_bucket{provider="stripe",code="200",le="0.016"}`:       "0+54x30",
	`launchready_ingest_request_seconds_bucket{provider="stripe",code="200",le="0.032"}`:       "0+60x30",
	`launchready_ingest_request_seconds_bucket{provider="stripe",code="200",le="+Inf"}`:        "0+60x30",
	`launchready_ingest_kafka_write_seconds_bucket{provider="stripe",le="0.002"}`:              "0+60x30",
	`launchready_ingest_kafka_write_seconds_bucket{provider="stripe",le="+Inf"}`:               "0+60x30",
	`launchready_cdc_slot_lag_bytes{slot="launchready"}`:                                       "1048576x30",
	`launchready_cdc_rows_total{slot="launchready",table="public.users",op="u"}`:               "0+30x30",
	`launchready_ops_consumer_lag{group="lr.audit"}`:                                           "10x30",
	`launchready_ops_consumer_lag{group="lr.sink.kit"}`:                                        "250x30",
	`launchready_sink_actions_total{provider="kit",action="tag",status="ok"}`:                  "0+60x30",
	`launchready_sink_actions_total{provider="kit",action="untag",status="error"}`:             "0+6x30",
	`launchready_sink_actions_total{provider="circle",action="add_access_group",status="dlq"}`: "0+3x30",
	`launchready_provider_requests_total{provider="circle",method="GET",code="200"}`:           "0+60x30",
	`launchready_provider_requests_total{provider="circle",method="PUT",code="429"}`:           "0+6x30",
	`launchready_provider_monthly_requests_used{provider="circle"}`:                            "1000x30",
	`launchready_provider_monthly_quota{provider="circle"}`:                                    "5000x30",
	`launchready_ops_mismatches_open{kind="paid_no_circle_access"}`:                            "2x30",
	`launchready_ops_mismatches_open{kind="paid_tagged_lead"}`:                                 "1x30",
	`launchready_ops_customers`:                        "60x30",
	`launchready_ops_refunds_access_granted`:           "1x30",
	`launchready_audit_rows_total{table="raw_events"}`: "0+120x30",
}

// wantPromQL is each Prometheus panel target's result at 30m, keyed by
// "panel title/refId": label set → value.
var wantPromQL = map[string]map[string]float64{
	"Webhook requests/A":                     {`{}`: 3},
	"Webhook failure rate/A":                 {`{}`: 0.2 / 3},
	"Duplicate rate/A":                       {`{}`: 0.2 / 3},
	"Mismatch rate/A":                        {`{}`: 0.05},
	"Replication slot lag/A":                 {`{}`: 1048576},
	"CDC slot lag/A":                         {`{slot="launchready"}`: 1048576},
	"Circle monthly quota used/A":            {`{}`: 0.2},
	"Webhook volume per provider/A":          {`{provider="stripe"}`: 1, `{provider="kit"}`: 2},
	"Webhook failure rate per provider/A":    {`{provider="stripe"}`: 0.1, `{provider="kit"}`: 0.05},
	"Refused webhooks by reason/A":           {`{provider="stripe",reason="signature"}`: 0.05, `{provider="kit",reason="stale"}`: 0.1},
	"Duplicate rate per provider/A":          {`{provider="stripe"}`: 0.1, `{provider="kit"}`: 0.05},
	"Webhook request latency/A":              {`{}`: 0.008},
	"Webhook request latency/B":              {`{}`: 0.024},
	"Webhook request latency/C":              {`{}`: 0.0304},
	"Kafka write latency p99/A":              {`{provider="stripe"}`: 0.00198},
	"CDC changes/A":                          {`{table="public.users",op="u"}`: 0.5},
	"Consumer lag per stage/A":               {`{group="lr.audit"}`: 10, `{group="lr.sink.kit"}`: 250},
	"Sink actions by status/A":               {`{provider="kit",status="ok"}`: 1, `{provider="kit",status="error"}`: 0.1, `{provider="circle",status="dlq"}`: 0.05},
	"Sink errors/A":                          {`{provider="kit"}`: 0.1, `{provider="circle"}`: 0.05},
	"Provider API requests by status code/A": {`{provider="circle",code="200"}`: 1, `{provider="circle",code="429"}`: 0.1},
	"Monthly quota used/A":                   {`{provider="circle"}`: 0.2},
	"Open mismatches by kind/A":              {`{kind="paid_no_circle_access"}`: 2, `{kind="paid_tagged_lead"}`: 1},
	"Refunded customers still with access/A": {`{}`: 1},
	"Audit rows written/A":                   {`{table="raw_events"}`: 2},
}

// bucketQuantile is histogram_quantile's linear interpolation over the
// request latency buckets above (per-second rates 0, 0.5, 0.9, 1, 1 for
// le 0.004, 0.008, 0.016, 0.032, +Inf), computed with the same float
// operations as the PromQL engine so the comparison can be exact.
func bucketQuantile(q float64) float64 {
	bounds := []float64{0.004, 0.008, 0.016, 0.032}
	counts := []float64{0, 30.0 * 5 / 300, 54.0 * 5 / 300, 60.0 * 5 / 300}
	rank := q * counts[len(counts)-1]
	b := sort.Search(len(counts), func(i int) bool { return counts[i] >= rank })
	start, count := 0.0, counts[b]
	if b > 0 {
		start = bounds[b-1]
		count -= counts[b-1]
		rank -= counts[b-1]
	}
	return start + (bounds[b]-start)*(rank/count)
}

type sample struct {
	Labels string     `yaml:"labels"`
	Value  exactFloat `yaml:"value"`
}

// exactFloat marshals with every digit a float64 needs (yaml.v3 shortens
// some values, and promtool compares exactly).
type exactFloat float64

func (f exactFloat) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: strconv.FormatFloat(float64(f), 'g', -1, 64)}, nil
}

type exprTest struct {
	Expr       string   `yaml:"expr"`
	EvalTime   string   `yaml:"eval_time"`
	ExpSamples []sample `yaml:"exp_samples"`
}

// Every PromQL expression of every dashboard is evaluated by promtool (the
// real PromQL engine) on series named as the stages export them, and must
// give exactly the expected samples.
func TestDashboardPromQLWithPromtool(t *testing.T) {
	t.Parallel()
	promtool(t)
	// Computed at run time: the compiler may fold a call in a package-level
	// initializer with exact constant arithmetic, which the engine does not.
	for ref, q := range map[string]float64{"A": 0.5, "B": 0.95, "C": 0.99} {
		wantPromQL["Webhook request latency/"+ref] = map[string]float64{`{}`: bucketQuantile(q)}
	}
	ds, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	var tests []exprTest
	seen := map[string]bool{}
	for _, d := range ds {
		for _, p := range d.Panels {
			if p.Datasource.Type != Prometheus {
				continue
			}
			for _, tg := range p.Targets {
				key := p.Title + "/" + tg.RefID
				seen[key] = true
				want, ok := wantPromQL[key]
				if !ok {
					t.Errorf("%s / %s: no expected samples in wantPromQL", d.File, key)
					continue
				}
				expr := ExpandPromQL(tg.Expr, 5*time.Minute)
				var exp []sample
				for labels, v := range want {
					exp = append(exp, sample{Labels: labels, Value: exactFloat(v)})
				}
				sort.Slice(exp, func(i, j int) bool { return exp[i].Labels < exp[j].Labels })
				tests = append(tests, exprTest{Expr: expr, EvalTime: "30m", ExpSamples: exp})
			}
		}
	}
	for key := range wantPromQL {
		if !seen[key] {
			t.Errorf("wantPromQL has %q, which no Prometheus panel has", key)
		}
	}
	if len(tests) < 15 {
		t.Fatalf("only %d PromQL expressions found", len(tests))
	}
	var series []map[string]string
	names := make([]string, 0, len(inputSeries))
	for s := range inputSeries {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		series = append(series, map[string]string{"series": s, "values": inputSeries[s]})
	}
	doc := map[string]any{
		"rule_files":          []string{},
		"evaluation_interval": "1m",
		"tests": []any{map[string]any{
			"interval":         "1m",
			"input_series":     series,
			"promql_expr_test": tests,
		}},
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboards.test.yml")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "test", "rules", file)
}

// The alert rules are valid, and their unit tests (alerts.test.yml: each
// rule fires on a scripted burst, stays firing inside the hysteresis band
// and resolves after keep_firing_for) pass in promtool.
func TestAlertRulesWithPromtool(t *testing.T) {
	t.Parallel()
	runPromtool(t, "check", "rules", "alerts.rules.yml")
	runPromtool(t, "test", "rules", "alerts.test.yml")

	// Every alert of the rule file is tested both firing and not firing.
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, "alerts.rules.yml", &rules)
	readYAML(t, "alerts.test.yml", &tests)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("alerts.test.yml must test %s both firing (%v) and not firing (%v)", r.Alert, fires[r.Alert], quiet[r.Alert])
			}
		}
	}
	if n != 7 {
		t.Errorf("%d alert rules, want 7", n)
	}
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// metricNames lists every launchready_… name the dashboards and rules use.
func metricNames(t *testing.T) []string {
	t.Helper()
	re := regexp.MustCompile(`launchready_[a-z0-9_]+`)
	set := map[string]bool{}
	ds, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				for _, m := range re.FindAllString(tg.Expr, -1) {
					set[m] = true
				}
			}
		}
	}
	rules, err := os.ReadFile("alerts.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range re.FindAllString(string(rules), -1) {
		set[m] = true
	}
	out := make([]string, 0, len(set))
	for m := range set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
