// Package dashboards holds launchready's Grafana dashboards (audit.json on
// the ClickHouse audit trail, pipeline.json on Prometheus), the alert rules
// and the provisioning docker-compose mounts. The ops page renders the
// ClickHouse panels from the same JSON, so it and Grafana show the same
// numbers; tests run every query in them against seeded data.
package dashboards

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed *.json
var files embed.FS

// Datasource types.
const (
	ClickHouse = "grafana-clickhouse-datasource"
	Prometheus = "prometheus"
)

// Dashboard is one dashboard file.
type Dashboard struct {
	File   string
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []Panel `json:"panels"`
}

// Panel is one panel; Unit is its field unit (percentunit, ms, bytes, …).
type Panel struct {
	ID          int    `json:"id"`
	Title       string `json:"title"`
	Type        string `json:"type"` // stat, timeseries, barchart, table
	Description string `json:"description"`
	Datasource  struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []Target `json:"targets"`
}

// Unit is the panel's unit ("" for plain numbers).
func (p Panel) Unit() string { return p.FieldConfig.Defaults.Unit }

// Target is one query: RawSQL for ClickHouse (Format 0 time series in long
// form: time, series…, value; 1 table), Expr for Prometheus.
type Target struct {
	RefID  string `json:"refId"`
	RawSQL string `json:"rawSql"`
	Format int    `json:"format"`
	Expr   string `json:"expr"`
	Legend string `json:"legendFormat"`
}

// Load parses every dashboard, sorted by file name.
func Load() ([]Dashboard, error) {
	names, err := fs.Glob(files, "*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Dashboard
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		var d Dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("dashboards: %s: %w", n, err)
		}
		d.File = n
		out = append(out, d)
	}
	return out, nil
}

// ByUID returns the dashboard with uid.
func ByUID(uid string) (Dashboard, error) {
	ds, err := Load()
	if err != nil {
		return Dashboard{}, err
	}
	for _, d := range ds {
		if d.UID == uid {
			return d, nil
		}
	}
	return Dashboard{}, fmt.Errorf("dashboards: no dashboard %q", uid)
}

// ExpandSQL replaces the ClickHouse data source's macros in sql the way the
// grafana-clickhouse-datasource plugin does for a time range [from, to] and
// an interval: $__timeFilter(c), $__dateFilter(c), $__dateTimeFilter(d, c),
// $__fromTime, $__toTime and $__interval_s. Any other macro is an error, so a
// dashboard cannot use one that the ops page and the tests do not know.
func ExpandSQL(sql string, from, to time.Time, interval time.Duration) (string, error) {
	dt := func(t time.Time) string { return fmt.Sprintf("toDateTime(%d)", t.Unix()) }
	date := func(t time.Time) string { return fmt.Sprintf("toDate('%s')", t.UTC().Format("2006-01-02")) }
	var b strings.Builder
	rest := sql
	for {
		i := strings.Index(rest, "$__")
		if i < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		b.WriteString(rest[:i])
		rest = rest[i+3:]
		j := 0
		for j < len(rest) && (rest[j] == '_' || rest[j] >= 'a' && rest[j] <= 'z' || rest[j] >= 'A' && rest[j] <= 'Z') {
			j++
		}
		name := rest[:j]
		rest = rest[j:]
		var args []string
		if strings.HasPrefix(rest, "(") {
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				return "", fmt.Errorf("macro $__%s: no closing parenthesis", name)
			}
			for _, a := range strings.Split(rest[1:end], ",") {
				args = append(args, strings.TrimSpace(a))
			}
			rest = rest[end+1:]
		}
		want := map[string]int{"timeFilter": 1, "dateFilter": 1, "dateTimeFilter": 2, "fromTime": 0, "toTime": 0, "interval_s": 0}
		n, ok := want[name]
		if !ok {
			return "", fmt.Errorf("macro $__%s is not supported", name)
		}
		if len(args) != n {
			return "", fmt.Errorf("macro $__%s takes %d argument(s), got %d", name, n, len(args))
		}
		switch name {
		case "timeFilter":
			fmt.Fprintf(&b, "%s >= %s AND %s <= %s", args[0], dt(from), args[0], dt(to))
		case "dateFilter":
			fmt.Fprintf(&b, "%s >= %s AND %s <= %s", args[0], date(from), args[0], date(to))
		case "dateTimeFilter":
			fmt.Fprintf(&b, "(%s >= %s AND %s <= %s) AND (%s >= %s AND %s <= %s)",
				args[0], date(from), args[0], date(to), args[1], dt(from), args[1], dt(to))
		case "fromTime":
			b.WriteString(dt(from))
		case "toTime":
			b.WriteString(dt(to))
		case "interval_s":
			b.WriteString(strconv.Itoa(int(math.Max(interval.Seconds(), 1))))
		}
	}
}

// ExpandPromQL replaces Grafana's $__rate_interval (and $__interval) with
// rateInterval, as Grafana does before sending the query to Prometheus.
func ExpandPromQL(expr string, rateInterval time.Duration) string {
	d := strconv.Itoa(int(rateInterval.Seconds())) + "s"
	return strings.NewReplacer("$__rate_interval", d, "$__interval", d).Replace(expr)
}
