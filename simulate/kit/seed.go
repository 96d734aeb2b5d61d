package kitsim

import "github.com/launchready/launchready/internal/mapping"

// Seed returns the tags and custom fields a mapping names, so a simulator
// starts with the account a founder would have set up for it.
func Seed(m *mapping.Mapping) (tags []Tag, fields []string) {
	seen := map[int64]bool{}
	add := func(refs []mapping.Ref) {
		for _, r := range refs {
			if !seen[r.ID] {
				seen[r.ID] = true
				tags = append(tags, Tag{ID: r.ID, Name: r.Name})
			}
		}
	}
	for _, p := range m.Plans {
		add(p.Kit.Tags)
	}
	add(m.Kit.LeadTags)
	for _, refs := range m.Kit.StatusTags {
		add(refs)
	}
	for _, k := range []string{m.Kit.Fields.Plan, m.Kit.Fields.Status, m.Kit.Fields.Renewal, m.Kit.Fields.Synced} {
		if k != "" {
			fields = append(fields, k)
		}
	}
	return tags, fields
}
