package circlesim

import "github.com/launchready/launchready/internal/mapping"

// Seed returns the access groups, member tags and profile fields a mapping
// names, so a simulator starts with the community a founder would have set
// up for it.
func Seed(m *mapping.Mapping) (groups, tags []Ref, fields []string) {
	seenG, seenT := map[int64]bool{}, map[int64]bool{}
	addT := func(refs []mapping.Ref) {
		for _, r := range refs {
			if !seenT[r.ID] {
				seenT[r.ID] = true
				tags = append(tags, Ref{ID: r.ID, Name: r.Name})
			}
		}
	}
	for _, p := range m.Plans {
		for _, r := range p.Circle.AccessGroups {
			if !seenG[r.ID] {
				seenG[r.ID] = true
				groups = append(groups, Ref{ID: r.ID, Name: r.Name})
			}
		}
		addT(p.Circle.MemberTags)
	}
	for _, refs := range m.Circle.StatusTags {
		addT(refs)
	}
	pf := m.Circle.ProfileFields
	for _, k := range []string{pf.Plan, pf.Status, pf.Renewal, pf.Synced} {
		if k != "" {
			fields = append(fields, k)
		}
	}
	return groups, tags, fields
}
