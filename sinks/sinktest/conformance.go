// Package sinktest is the conformance suite every sink provider passes: the
// same scenarios (grant, revoke, replay, dry run, drift, plan change,
// faults) run against each provider and its simulator, through the real
// Worker, with results captured in memory instead of Kafka.
package sinktest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/schemas"
	"github.com/launchready/launchready/sinks"
)

// Observed is what the provider holds for one customer, read through the
// simulator's Go API (not through the provider under test).
type Observed struct {
	Found        bool
	Tags, Groups map[int64]bool
	Fields       map[string]string // fields with a value
	// Invited counts invitation or welcome triggers the customer received.
	Invited int
}

// Harness is one provider wired to a fresh simulator.
type Harness struct {
	Provider sinks.Provider
	// Writes returns the simulator's count of write requests so far.
	Writes func() int
	// Duplicates returns writes of something the customer already had
	// (duplicate tags, duplicate access-group adds).
	Duplicates func() int
	// Violations returns the simulator's rate-limit violations; Injected
	// its injected faults.
	Violations, Injected func() int
	// Seed makes the provider hold a customer, bypassing the sink.
	Seed func(t *testing.T, email string, tags, groups []int64, fields map[string]string)
	// Observe reads what the provider holds for email.
	Observe func(t *testing.T, email string) Observed
	// Faults sets the simulator's injected 5xx rate and the rate of
	// connections dropped after the write took effect.
	Faults func(errRate, dropRate float64)
}

// Capture is a sinks.Producer that keeps results in memory.
type Capture struct {
	mu      sync.Mutex
	Results []schemas.SinkResult
	Dead    []schemas.DeadLetter
}

// Write decodes and keeps msgs.
func (c *Capture) Write(_ context.Context, msgs ...kafka.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		switch kafka.HeaderValue(m, schemas.HeaderEnvelope) {
		case sinks.EnvelopeSinkResult:
			var r schemas.SinkResult
			if err := json.Unmarshal(m.Value, &r); err != nil {
				return err
			}
			c.Results = append(c.Results, r)
		case sinks.EnvelopeDeadLetter:
			var d schemas.DeadLetter
			if err := json.Unmarshal(m.Value, &d); err != nil {
				return err
			}
			c.Dead = append(c.Dead, d)
		}
	}
	return nil
}

// Take returns and forgets the captured results.
func (c *Capture) Take() []schemas.SinkResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.Results
	c.Results = nil
	return out
}

// Config returns default settings for workers that write to a Capture.
func Config(t testing.TB) *config.Config {
	t.Helper()
	cfg, err := config.LoadFrom(func(string) (string, bool) { return "", false }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Entitlement builds an entitlement record for tests.
func Entitlement(customer, email, plan, status string, access bool, version int64) *schemas.Entitlement {
	end := time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC)
	return &schemas.Entitlement{
		V: schemas.EntitlementVersion, CustomerID: customer, Email: email, Plan: plan, Status: status, Access: access,
		CurrentPeriodEnd: &end, Version: version, UpdatedAt: time.Now().UTC(), SourceEventIDs: []string{"evt_test"},
	}
}

// Message encodes e as an lr.entitlements record.
func Message(t testing.TB, e *schemas.Entitlement) kafka.Message {
	t.Helper()
	m, err := kafka.JSON("lr.entitlements", e.CustomerID, "entitlement/1", e)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Sync runs one batch of entitlements through a new Worker for h.Provider
// and returns the worker's counters.
func Sync(t testing.TB, h Harness, m *mapping.Mapping, o sinks.Options, out *Capture, es ...*schemas.Entitlement) sinks.Stats {
	t.Helper()
	var batch []kafka.Message
	for _, e := range es {
		batch = append(batch, Message(t, e))
	}
	if o.RetryMin == 0 {
		o.RetryMin, o.RetryMax = 5*time.Millisecond, 50*time.Millisecond
	}
	w := sinks.NewWorker(Config(t), m, h.Provider, out, o)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.Handle(ctx, batch); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return w.Stats()
}

// Converged fails t unless the provider holds exactly what the mapping
// wants for e (see Problems).
func Converged(t testing.TB, h Harness, m *mapping.Mapping, e *schemas.Entitlement, got Observed) {
	t.Helper()
	for _, p := range Problems(h.Provider, m, e, got) {
		t.Error(p)
	}
}

// Problems lists how got differs from what the mapping wants for e: a
// desired tag or group missing, a managed one not desired but present, a
// field not equal (the stamp only needs a value), a customer not created.
func Problems(p sinks.Provider, m *mapping.Mapping, e *schemas.Entitlement, got Observed) []string {
	var out []string
	bad := func(f string, a ...any) {
		out = append(out, fmt.Sprintf("%s %s: ", p.Name(), e.Email)+fmt.Sprintf(f, a...))
	}
	tg := p.Target(m.Desired(e, time.Now()), e)
	if !got.Found {
		if tg.Create {
			bad("not created")
		}
		return out
	}
	check := func(what string, want, managed []mapping.Ref, have map[int64]bool) {
		wanted := map[int64]bool{}
		for _, r := range want {
			wanted[r.ID] = true
			if !have[r.ID] {
				bad("%s %d (%s) missing", what, r.ID, r.Name)
			}
		}
		for _, r := range managed {
			if !wanted[r.ID] && have[r.ID] {
				bad("%s %d (%s) should be gone", what, r.ID, r.Name)
			}
		}
	}
	check("tag", tg.Tags, tg.ManagedTags, got.Tags)
	check("access group", tg.Groups, tg.ManagedGroups, got.Groups)
	for k, v := range tg.Fields {
		if k == tg.Stamp {
			if got.Fields[k] == "" {
				bad("field %s (stamp) not set", k)
			}
			continue
		}
		if got.Fields[k] != v {
			bad("field %s = %q, want %q", k, got.Fields[k], v)
		}
	}
	return out
}

func statuses(rs []schemas.SinkResult) map[string]int {
	out := map[string]int{}
	for _, r := range rs {
		out[r.Status]++
	}
	return out
}
