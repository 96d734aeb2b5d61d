package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/httpx"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/schemas"
)

// fake is a hand-written Provider with function fields.
type fake struct {
	read  func(ctx context.Context, e *schemas.Entitlement) (State, Outcome, error)
	apply func(ctx context.Context, e *schemas.Entitlement, st *State, a Action) (Outcome, error)
}

func (f *fake) Name() string         { return "fake" }
func (f *fake) CreateAction() string { return "create_fake" }
func (f *fake) Target(d mapping.Desired, e *schemas.Entitlement) Target {
	return Target{Tags: d.KitTags, ManagedTags: d.ManagedKit, Fields: d.KitFields, Create: e.Status != schemas.StatusNone, CreateFields: true}
}
func (f *fake) Read(ctx context.Context, e *schemas.Entitlement, _ Target) (State, Outcome, error) {
	return f.read(ctx, e)
}
func (f *fake) Apply(ctx context.Context, e *schemas.Entitlement, st *State, a Action) (Outcome, error) {
	return f.apply(ctx, e, st, a)
}

// sink records what the worker writes.
type sink struct {
	mu      sync.Mutex
	results []schemas.SinkResult
	dead    []schemas.DeadLetter
	err     error
}

func (s *sink) Write(_ context.Context, msgs ...kafka.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	for _, m := range msgs {
		switch kafka.HeaderValue(m, schemas.HeaderEnvelope) {
		case EnvelopeSinkResult:
			var r schemas.SinkResult
			_ = json.Unmarshal(m.Value, &r)
			s.results = append(s.results, r)
		case EnvelopeDeadLetter:
			var d schemas.DeadLetter
			_ = json.Unmarshal(m.Value, &d)
			s.dead = append(s.dead, d)
		}
	}
	return nil
}

func testWorker(t *testing.T, p Provider, out Producer, o Options) *Worker {
	t.Helper()
	cfg, err := config.LoadFrom(func(string) (string, bool) { return "", false }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mapping.Example()
	if err != nil {
		t.Fatal(err)
	}
	if o.RetryMin == 0 {
		o.RetryMin, o.RetryMax = time.Millisecond, 5*time.Millisecond
	}
	return NewWorker(cfg, m, p, out, o)
}

func ent(customer string, version int64) *schemas.Entitlement {
	return &schemas.Entitlement{V: 1, CustomerID: customer, Email: customer + "@example.org", Plan: "pro", Status: schemas.StatusActive, Access: true, Version: version}
}

func msg(t *testing.T, v any, key string) kafka.Message {
	t.Helper()
	m, err := kafka.JSON("lr.entitlements", key, "entitlement/1", v)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// found is a provider state that needs only the pro tag.
func found() State {
	return State{Found: true, ID: "7", Tags: map[int64]bool{}, Fields: map[string]string{"plan": "pro", "billing_status": "active", "next_renewal": ""}}
}

func TestWorkerRetriesTransientFailureFromAFreshRead(t *testing.T) {
	t.Parallel()
	var reads, applies atomic.Int32
	p := &fake{
		read: func(context.Context, *schemas.Entitlement) (State, Outcome, error) {
			reads.Add(1)
			st := found()
			if applies.Load() > 1 {
				st.Tags[3001] = true // the first apply failed, the second took effect
			}
			return st, Outcome{HTTPStatus: 200, Attempts: 1}, nil
		},
		apply: func(context.Context, *schemas.Entitlement, *State, Action) (Outcome, error) {
			if applies.Add(1) == 1 {
				return Outcome{Attempts: 7}, &httpx.StatusError{Provider: "fake", Status: http.StatusServiceUnavailable}
			}
			return Outcome{HTTPStatus: 201, Attempts: 1}, nil
		},
	}
	out := &sink{}
	w := testWorker(t, p, out, Options{})
	if err := w.Handle(t.Context(), []kafka.Message{msg(t, ent("cus_1", 1), "cus_1")}); err != nil {
		t.Fatal(err)
	}
	if reads.Load() != 2 || applies.Load() != 2 {
		t.Errorf("reads %d, applies %d: want 2 and 2 (each try starts with a read)", reads.Load(), applies.Load())
	}
	var got []string
	for _, r := range out.results {
		got = append(got, r.Action+"/"+r.Status)
	}
	if want := []string{"tag/error", "tag/ok"}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("results %v, want %v", got, want)
	}
	if st := w.Stats(); st.Retries != 1 || st.Customers != 1 || st.Changed != 1 {
		t.Errorf("stats %+v", st)
	}
	if err := w.Ready(t.Context()); err != nil {
		t.Errorf("not ready after recovery: %v", err)
	}
}

func TestWorkerStopsOnRejectedCredentials(t *testing.T) {
	t.Parallel()
	p := &fake{read: func(context.Context, *schemas.Entitlement) (State, Outcome, error) {
		return State{}, Outcome{}, &httpx.StatusError{Provider: "fake", Status: http.StatusUnauthorized}
	}}
	out := &sink{}
	err := testWorker(t, p, out, Options{}).Handle(t.Context(), []kafka.Message{msg(t, ent("cus_1", 1), "cus_1")})
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("err = %v, want ErrRejected", err)
	}
	if len(out.dead) != 0 {
		t.Errorf("rejected credentials must not dead-letter customers: %+v", out.dead)
	}
}

func TestWorkerDeadLettersWhatItCannotHandle(t *testing.T) {
	t.Parallel()
	var readFor []string
	var mu sync.Mutex
	p := &fake{
		read: func(_ context.Context, e *schemas.Entitlement) (State, Outcome, error) {
			mu.Lock()
			readFor = append(readFor, e.CustomerID)
			mu.Unlock()
			if e.CustomerID == "cus_404" {
				return State{}, Outcome{}, &httpx.StatusError{Provider: "fake", Status: http.StatusUnprocessableEntity, Body: "invalid"}
			}
			st := found()
			st.Tags[3001] = true
			return st, Outcome{}, nil
		},
	}
	future := ent("cus_v9", 1)
	future.V = 9
	merged := ent("cus_merged", 1)
	merged.Deleted = true
	batch := []kafka.Message{
		{Key: []byte("cus_bad"), Value: []byte("{not json")},
		msg(t, future, "cus_v9"),
		{Key: []byte("cus_gone")}, // tombstone
		msg(t, merged, "cus_merged"),
		msg(t, ent("cus_404", 1), "cus_404"),
		msg(t, ent("cus_ok", 1), "cus_ok"),
	}
	out := &sink{}
	w := testWorker(t, p, out, Options{Concurrency: 1})
	if err := w.Handle(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, d := range out.dead {
		keys[d.Key] = true
		if d.Stage != "sink.fake" || d.Reason == "" {
			t.Errorf("dead letter %+v lacks stage or reason", d)
		}
	}
	for _, k := range []string{"cus_bad", "cus_v9", "cus_404"} {
		if !keys[k] {
			t.Errorf("no dead letter for %s (got %v)", k, keys)
		}
	}
	if len(readFor) != 2 {
		t.Errorf("read %v: want cus_404 and cus_ok only", readFor)
	}
	byCustomer := map[string]string{}
	for _, r := range out.results {
		byCustomer[r.CustomerID] = r.Action + "/" + r.Status
	}
	want := map[string]string{"cus_merged": "none/skipped", "cus_404": "read/dlq", "cus_ok": "noop/noop"}
	for k, v := range want {
		if byCustomer[k] != v {
			t.Errorf("%s: %q, want %q", k, byCustomer[k], v)
		}
	}
}

func TestWorkerDrainsInFlightCustomersOnShutdown(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	var applied atomic.Int32
	p := &fake{
		read: func(context.Context, *schemas.Entitlement) (State, Outcome, error) { return found(), Outcome{}, nil },
		apply: func(ctx context.Context, _ *schemas.Entitlement, _ *State, _ Action) (Outcome, error) {
			if applied.Add(1) == 1 {
				close(started)
			}
			select {
			case <-release:
				return Outcome{HTTPStatus: 201}, nil
			case <-ctx.Done():
				return Outcome{}, ctx.Err()
			}
		},
	}
	out := &sink{}
	w := testWorker(t, p, out, Options{Concurrency: 1, Drain: 5 * time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- w.Handle(ctx, []kafka.Message{msg(t, ent("cus_1", 1), "cus_1"), msg(t, ent("cus_2", 1), "cus_2")})
	}()
	<-started
	cancel()
	time.Sleep(20 * time.Millisecond)
	close(release)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Handle = %v, want context.Canceled (the batch is not acknowledged)", err)
	}
	if applied.Load() != 1 {
		t.Errorf("%d customers started; shutdown must start no new one", applied.Load())
	}
	if len(out.results) != 1 || out.results[0].Status != schemas.SinkOK {
		t.Errorf("results %+v: the in-flight customer's result must be recorded", out.results)
	}
}

func TestWorkerFailsWhenResultsCannotBeRecorded(t *testing.T) {
	t.Parallel()
	p := &fake{read: func(context.Context, *schemas.Entitlement) (State, Outcome, error) {
		st := found()
		st.Tags[3001] = true
		return st, Outcome{}, nil
	}}
	out := &sink{err: kafka.ErrUnavailable}
	err := testWorker(t, p, out, Options{}).Handle(t.Context(), []kafka.Message{msg(t, ent("cus_1", 1), "cus_1")})
	if !errors.Is(err, kafka.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable (the batch must not be committed)", err)
	}
}
