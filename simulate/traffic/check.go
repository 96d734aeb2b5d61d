package traffic

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// Outcome compares the pipeline's compacted state with the generator's truth.
type Outcome struct {
	Customers int `json:"customers"`
	// Identities is the number of live canonical customers the pipeline holds
	// for this population (merged-away records excluded); DuplicateRecords is
	// how many more than one a person has.
	Identities       int `json:"identities"`
	DuplicateRecords int `json:"duplicate_records"`
	Matched          int `json:"matched"`
	// Wrong lists the customers whose entitlement differs from the truth.
	Wrong    []string       `json:"wrong,omitempty"`
	ByStatus map[string]int `json:"entitlements_by_status"`
}

// OK reports whether every customer matches and nobody has two records.
func (o *Outcome) OK() bool {
	return o.Matched == o.Customers && o.DuplicateRecords == 0 && len(o.Wrong) == 0
}

// Snapshot is the pipeline's latest identity and entitlement per customer id,
// read from the compacted topics.
type Snapshot struct {
	Identities   map[string]schemas.Identity
	Entitlements map[string]schemas.Entitlement
}

// ReadSnapshot reads lr.identity and lr.entitlements to their ends.
func ReadSnapshot(ctx context.Context, cfg *config.Config) (*Snapshot, error) {
	s := &Snapshot{Identities: map[string]schemas.Identity{}, Entitlements: map[string]schemas.Entitlement{}}
	err := kafka.ReadToEnd(ctx, cfg.KafkaBrokers, cfg.Topic("identity"), func(m kafka.Message) error {
		if len(m.Value) == 0 {
			delete(s.Identities, string(m.Key))
			return nil
		}
		var id schemas.Identity
		if err := json.Unmarshal(m.Value, &id); err != nil {
			return fmt.Errorf("identity record: %w", err)
		}
		s.Identities[id.CustomerID] = id
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = kafka.ReadToEnd(ctx, cfg.KafkaBrokers, cfg.Topic("entitlements"), func(m kafka.Message) error {
		if len(m.Value) == 0 {
			delete(s.Entitlements, string(m.Key))
			return nil
		}
		var e schemas.Entitlement
		if err := json.Unmarshal(m.Value, &e); err != nil {
			return fmt.Errorf("entitlement record: %w", err)
		}
		if old, ok := s.Entitlements[e.CustomerID]; !ok || e.Version >= old.Version {
			s.Entitlements[e.CustomerID] = e
		}
		return nil
	})
	return s, err
}

// Compare matches every customer to the pipeline's records: by app user id
// first, then by any of their emails.
func Compare(s *Snapshot, customers []*Customer) *Outcome {
	o := &Outcome{Customers: len(customers), ByStatus: map[string]int{}}
	byUser := map[string][]string{}
	byEmail := map[string][]string{}
	for id, ident := range s.Identities {
		if ident.MergedInto != "" {
			continue
		}
		if ident.UserID != "" {
			byUser[ident.UserID] = append(byUser[ident.UserID], id)
		}
		emails := append([]string{ident.Email}, ident.Emails...)
		for _, e := range uniq(emails) {
			if e != "" {
				byEmail[e] = append(byEmail[e], id)
			}
		}
	}
	for _, c := range customers {
		want := c.Expected()
		ids := map[string]bool{}
		for _, id := range byUser[c.UserID] {
			ids[id] = true
		}
		for _, e := range []string{c.Email, c.NewEmail} {
			for _, id := range byEmail[e] {
				ids[id] = true
			}
		}
		o.Identities += len(ids)
		if len(ids) > 1 {
			o.DuplicateRecords += len(ids) - 1
		}
		if len(ids) == 0 {
			o.Wrong = append(o.Wrong, fmt.Sprintf("%s (%s): no customer record", c.Email, c.Life))
			continue
		}
		var got *schemas.Entitlement
		for id := range ids {
			if e, ok := s.Entitlements[id]; ok && !e.Deleted {
				e := e
				got = &e
			}
		}
		status, access, plan := schemas.StatusNone, false, ""
		if got != nil {
			status, access, plan = got.Status, got.Access, got.Plan
		}
		o.ByStatus[status]++
		if status != want.Status || access != want.Access || (want.Access && plan != want.Plan) {
			o.Wrong = append(o.Wrong, fmt.Sprintf("%s (%s): status %s access %v plan %q, want %s %v %q",
				c.Email, c.Life, status, access, plan, want.Status, want.Access, want.Plan))
			continue
		}
		o.Matched++
	}
	sort.Strings(o.Wrong)
	return o
}

func uniq(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		s = strings.TrimSpace(strings.ToLower(s))
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// WaitConverged polls the compacted topics until every customer matches the
// truth or the timeout passes; it returns the last outcome either way.
func WaitConverged(ctx context.Context, cfg *config.Config, customers []*Customer, timeout time.Duration, progress func(*Outcome)) (*Outcome, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, err := ReadSnapshot(ctx, cfg)
		if err != nil {
			return nil, err
		}
		o := Compare(s, customers)
		if progress != nil {
			progress(o)
		}
		if o.OK() || time.Now().After(deadline) {
			return o, nil
		}
		select {
		case <-ctx.Done():
			return o, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
