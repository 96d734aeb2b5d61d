package dashboards

import (
	"strings"
	"testing"
	"time"
)

// ExpandSQL never panics, and leaves SQL without macros unchanged.
func FuzzExpandSQL(f *testing.F) {
	f.Add("SELECT 1 WHERE $__dateTimeFilter(event_date, at) AND x < $__toTime")
	f.Add("$__interval_s $__timeFilter(at")
	f.Add("$__unknown(a) $__")
	f.Fuzz(func(t *testing.T, sql string) {
		out, err := ExpandSQL(sql, time.Unix(1700000000, 0), time.Unix(1700003600, 0), time.Minute)
		if !strings.Contains(sql, "$__") && (err != nil || out != sql) {
			t.Fatalf("SQL without macros changed: %q → %q, %v", sql, out, err)
		}
	})
}
