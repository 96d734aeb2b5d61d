package mapping

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/schemas"
)

func TestExampleIsTheShippedFile(t *testing.T) {
	t.Parallel()
	shipped, err := os.ReadFile(filepath.Join("..", "..", "examples", "mapping.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(shipped) != string(exampleYAML) {
		t.Fatal("internal/mapping/example.yaml differs from examples/mapping.yaml: copy it over")
	}
	m, err := Example()
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := m.PlanFor("price_pro_yearly", ""); !ok || p != "pro" {
		t.Fatalf("PlanFor(price) = %q %v", p, ok)
	}
	if p, ok := m.PlanFor("price_unknown", "prod_starter"); !ok || p != "starter" {
		t.Fatalf("PlanFor(product) = %q %v", p, ok)
	}
	if m.GracePeriod != 72*time.Hour {
		t.Fatalf("grace = %v", m.GracePeriod)
	}
}

func TestParseErrorsAreClear(t *testing.T) {
	t.Parallel()
	for doc, want := range map[string]string{
		"version: 2\nplans: [{name: a, prices: [price_1]}]":                                                 "version: must be 1",
		"version: 1\nplans: [{name: a, prices: [sku_1]}]":                                                   "not a Stripe price id",
		"version: 1\nplans: [{name: a, prices: [price_1]}, {name: b, prices: [price_1]}]":                   "already maps to plan",
		"version: 1\nplans: [{name: a, prices: [price_1]}]\nkit: {status_tags: {gone: [{id: 1, name: x}]}}": `"gone" is not a status`,
		"version: 1\nplans: [{name: a, prices: [price_1], circel: {}}]":                                     "field circel not found",
		"version: 1\nplans: [{name: a, prices: [price_1], kit: {tags: [{id: 0, name: x}]}}]":                "id must be a positive",
	} {
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q): err = %v, want %q", doc, err, want)
		}
	}
}

func ids(refs []Ref) map[int64]bool {
	out := map[int64]bool{}
	for _, r := range refs {
		out[r.ID] = true
	}
	return out
}

func TestDesired(t *testing.T) {
	t.Parallel()
	m, _ := Example()
	end := time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC)
	synced := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name                        string
		e                           schemas.Entitlement
		circleGroups, kitTags, gone []int64
		renewal                     string
	}{
		{"active pro", schemas.Entitlement{Plan: "pro", Status: "active", Access: true, CurrentPeriodEnd: &end}, []int64{1001}, []int64{3001}, []int64{3100, 3102}, "2027-01-05"},
		{"refunded pro", schemas.Entitlement{Plan: "pro", Status: "refunded", CurrentPeriodEnd: &end}, nil, []int64{3102}, []int64{3001, 3100}, ""},
		{"lead", schemas.Entitlement{Status: "none"}, nil, []int64{3100}, []int64{3001}, ""},
		{"past due in grace", schemas.Entitlement{Plan: "starter", Status: "past_due", Access: true}, []int64{1002}, []int64{3002, 3101}, []int64{3100}, ""},
	} {
		d := m.Desired(&tc.e, synced)
		if g := ids(d.CircleGroups); len(g) != len(tc.circleGroups) {
			t.Errorf("%s: circle groups %v, want %v", tc.name, d.CircleGroups, tc.circleGroups)
		}
		for _, id := range tc.circleGroups {
			if !ids(d.CircleGroups)[id] {
				t.Errorf("%s: circle group %d missing", tc.name, id)
			}
		}
		kt := ids(d.KitTags)
		for _, id := range tc.kitTags {
			if !kt[id] {
				t.Errorf("%s: kit tag %d missing from %v", tc.name, id, d.KitTags)
			}
		}
		for _, id := range tc.gone {
			if kt[id] {
				t.Errorf("%s: kit tag %d should be removed", tc.name, id)
			}
			if !ids(d.ManagedKit)[id] {
				t.Errorf("%s: kit tag %d is not managed, so it would never be removed", tc.name, id)
			}
		}
		if d.KitFields["next_renewal"] != tc.renewal {
			t.Errorf("%s: renewal field %q, want %q", tc.name, d.KitFields["next_renewal"], tc.renewal)
		}
		if d.CircleFields["last_synced_at"] != "2026-12-01T10:00:00Z" {
			t.Errorf("%s: synced field %q", tc.name, d.CircleFields["last_synced_at"])
		}
	}
}
