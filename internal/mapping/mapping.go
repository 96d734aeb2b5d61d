// Package mapping is the founder's configuration of what a payment means
// downstream (LR_MAPPING_FILE): which Stripe prices and products make which
// plan, and what each plan and entitlement status must look like in Circle
// (access groups, member tags, profile fields) and Kit (tags, custom fields).
// The reconciler reads plans from it; the sinks and the mismatch detector
// read the desired downstream state from Desired.
package mapping

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/launchready/launchready/schemas"
)

// Ref names a downstream object by the provider's id and a human name.
type Ref struct {
	ID   int64  `yaml:"id"`
	Name string `yaml:"name"`
}

// Plan is one plan and what it grants while the customer has access.
type Plan struct {
	Name     string   `yaml:"name"`
	Prices   []string `yaml:"prices"`
	Products []string `yaml:"products"`
	Circle   struct {
		AccessGroups []Ref `yaml:"access_groups"`
		MemberTags   []Ref `yaml:"member_tags"`
	} `yaml:"circle"`
	Kit struct {
		Tags []Ref `yaml:"tags"`
	} `yaml:"kit"`
}

// Fields names the custom/profile fields that show account state downstream.
type Fields struct {
	Plan    string `yaml:"plan"`
	Status  string `yaml:"status"`
	Renewal string `yaml:"renewal"`
	Synced  string `yaml:"synced"`
}

// Mapping is the whole file.
type Mapping struct {
	Version int `yaml:"version"`
	// GracePeriod keeps access while a renewal payment is past due.
	GracePeriod time.Duration `yaml:"grace_period"`
	Plans       []Plan        `yaml:"plans"`
	Circle      struct {
		StatusTags    map[string][]Ref `yaml:"status_tags"`
		ProfileFields Fields           `yaml:"profile_fields"`
	} `yaml:"circle"`
	Kit struct {
		// LeadTags mark prospects who get sales email; a customer who has
		// ever paid must not keep them.
		LeadTags []Ref `yaml:"lead_tags"`
		// StatusTags are held while the entitlement has that status and
		// removed otherwise (refunded stops the customer sequences).
		StatusTags map[string][]Ref `yaml:"status_tags"`
		Fields     Fields           `yaml:"fields"`
	} `yaml:"kit"`

	byPrice, byProduct map[string]string
	byName             map[string]*Plan
}

var statuses = []string{schemas.StatusNone, schemas.StatusActive, schemas.StatusPastDue, schemas.StatusCanceled, schemas.StatusRefunded, schemas.StatusDisputed}

// Load reads and validates a mapping file.
func Load(path string) (*Mapping, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	m, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("mapping %s: %w", path, err)
	}
	return m, nil
}

// Parse decodes and validates a mapping document; unknown keys are errors, so
// a typo does not silently grant or withhold access.
func Parse(b []byte) (*Mapping, error) {
	var m Mapping
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a valid mapping document: %w", err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Mapping) validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if m.Version != 1 {
		bad("version: must be 1, got %d", m.Version)
	}
	if m.GracePeriod < 0 {
		bad("grace_period: must not be negative")
	}
	if len(m.Plans) == 0 {
		bad("plans: at least one plan is needed")
	}
	m.byPrice, m.byProduct, m.byName = map[string]string{}, map[string]string{}, map[string]*Plan{}
	for i := range m.Plans {
		p := &m.Plans[i]
		where := fmt.Sprintf("plans[%d]", i)
		if p.Name == "" {
			bad("%s.name: is empty", where)
		}
		if _, dup := m.byName[p.Name]; dup {
			bad("%s.name: plan %q is defined twice", where, p.Name)
		}
		m.byName[p.Name] = p
		if len(p.Prices)+len(p.Products) == 0 {
			bad("%s (%s): needs at least one price or product id", where, p.Name)
		}
		for _, id := range p.Prices {
			if !strings.HasPrefix(id, "price_") && !strings.HasPrefix(id, "plan_") {
				bad("%s.prices: %q is not a Stripe price id (price_…)", where, id)
			}
			if other, dup := m.byPrice[id]; dup {
				bad("%s.prices: %q already maps to plan %q", where, id, other)
			}
			m.byPrice[id] = p.Name
		}
		for _, id := range p.Products {
			if !strings.HasPrefix(id, "prod_") {
				bad("%s.products: %q is not a Stripe product id (prod_…)", where, id)
			}
			if other, dup := m.byProduct[id]; dup {
				bad("%s.products: %q already maps to plan %q", where, id, other)
			}
			m.byProduct[id] = p.Name
		}
		checkRefs(bad, where+".circle.access_groups", p.Circle.AccessGroups)
		checkRefs(bad, where+".circle.member_tags", p.Circle.MemberTags)
		checkRefs(bad, where+".kit.tags", p.Kit.Tags)
	}
	checkRefs(bad, "kit.lead_tags", m.Kit.LeadTags)
	for _, st := range []struct {
		where string
		tags  map[string][]Ref
	}{{"circle.status_tags", m.Circle.StatusTags}, {"kit.status_tags", m.Kit.StatusTags}} {
		for s, refs := range st.tags {
			if !validStatus(s) {
				bad("%s: %q is not a status (%s)", st.where, s, strings.Join(statuses, ", "))
			}
			checkRefs(bad, st.where+"."+s, refs)
		}
	}
	return errors.Join(errs...)
}

func checkRefs(bad func(string, ...any), where string, refs []Ref) {
	for i, r := range refs {
		if r.ID <= 0 {
			bad("%s[%d]: id must be a positive provider id", where, i)
		}
		if r.Name == "" {
			bad("%s[%d]: name is empty", where, i)
		}
	}
}

func validStatus(s string) bool {
	for _, v := range statuses {
		if v == s {
			return true
		}
	}
	return false
}

// PlanFor returns the plan of a Stripe price or product id ("" and false when
// neither is mapped). The price wins over the product.
func (m *Mapping) PlanFor(priceID, productID string) (string, bool) {
	if p, ok := m.byPrice[priceID]; ok && priceID != "" {
		return p, true
	}
	if p, ok := m.byProduct[productID]; ok && productID != "" {
		return p, true
	}
	return "", false
}

// Plan returns a plan by name.
func (m *Mapping) Plan(name string) (*Plan, bool) {
	p, ok := m.byName[name]
	return p, ok
}

// Desired is what Circle and Kit should hold for one entitlement. Managed
// lists everything the mapping controls: a managed tag or group not in the
// desired set must be removed; anything unmanaged is left alone.
type Desired struct {
	CircleGroups, CircleTags           []Ref
	ManagedCircleGroups, ManagedCircle []Ref
	KitTags, ManagedKit                []Ref
	CircleFields, KitFields            map[string]string
}

// Desired computes the downstream state of e. syncedAt fills the Circle
// "last synced" profile field when one is configured.
func (m *Mapping) Desired(e *schemas.Entitlement, syncedAt time.Time) Desired {
	var d Desired
	for i := range m.Plans {
		p := &m.Plans[i]
		d.ManagedCircleGroups = append(d.ManagedCircleGroups, p.Circle.AccessGroups...)
		d.ManagedCircle = append(d.ManagedCircle, p.Circle.MemberTags...)
		d.ManagedKit = append(d.ManagedKit, p.Kit.Tags...)
		if e.Access && p.Name == e.Plan {
			d.CircleGroups = append(d.CircleGroups, p.Circle.AccessGroups...)
			d.CircleTags = append(d.CircleTags, p.Circle.MemberTags...)
			d.KitTags = append(d.KitTags, p.Kit.Tags...)
		}
	}
	for _, s := range sortedKeys(m.Circle.StatusTags) {
		d.ManagedCircle = append(d.ManagedCircle, m.Circle.StatusTags[s]...)
		if s == e.Status {
			d.CircleTags = append(d.CircleTags, m.Circle.StatusTags[s]...)
		}
	}
	for _, s := range sortedKeys(m.Kit.StatusTags) {
		d.ManagedKit = append(d.ManagedKit, m.Kit.StatusTags[s]...)
		if s == e.Status {
			d.KitTags = append(d.KitTags, m.Kit.StatusTags[s]...)
		}
	}
	// Lead tags: kept for prospects only. Anyone who ever paid leaves the
	// sales sequences, whatever happened since.
	d.ManagedKit = append(d.ManagedKit, m.Kit.LeadTags...)
	if e.Status == schemas.StatusNone {
		d.KitTags = append(d.KitTags, m.Kit.LeadTags...)
	}
	d.CircleFields = fields(m.Circle.ProfileFields, e, syncedAt)
	d.KitFields = fields(m.Kit.Fields, e, time.Time{})
	d.CircleGroups, d.CircleTags, d.KitTags = dedup(d.CircleGroups), dedup(d.CircleTags), dedup(d.KitTags)
	d.ManagedCircleGroups, d.ManagedCircle, d.ManagedKit = dedup(d.ManagedCircleGroups), dedup(d.ManagedCircle), dedup(d.ManagedKit)
	return d
}

func fields(f Fields, e *schemas.Entitlement, syncedAt time.Time) map[string]string {
	out := map[string]string{}
	if f.Plan != "" {
		out[f.Plan] = e.Plan
	}
	if f.Status != "" {
		out[f.Status] = e.Status
	}
	if f.Renewal != "" {
		out[f.Renewal] = ""
		if e.CurrentPeriodEnd != nil && e.Access {
			out[f.Renewal] = e.CurrentPeriodEnd.UTC().Format("2006-01-02")
		}
	}
	if f.Synced != "" && !syncedAt.IsZero() {
		out[f.Synced] = syncedAt.UTC().Format(time.RFC3339)
	}
	return out
}

func sortedKeys(m map[string][]Ref) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func dedup(refs []Ref) []Ref {
	seen := map[int64]bool{}
	out := refs[:0:0]
	for _, r := range refs {
		if !seen[r.ID] {
			seen[r.ID] = true
			out = append(out, r)
		}
	}
	return out
}

// Example returns the mapping in examples/mapping.yaml, parsed: the default
// when LR_MAPPING_FILE is not set, so the local stack and the simulators
// work out of the box.
func Example() (*Mapping, error) {
	m, err := Parse(exampleYAML)
	if err != nil {
		return nil, fmt.Errorf("mapping: the built-in example: %w", err)
	}
	return m, nil
}

// Resolve loads path, or returns the built-in example when path is empty.
func Resolve(path string) (*Mapping, error) {
	if path == "" {
		return Example()
	}
	return Load(path)
}
