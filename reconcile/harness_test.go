package reconcile

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/migrate"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/testenv"
	"github.com/launchready/launchready/reconcile/internal/fixture"
	"github.com/launchready/launchready/schemas"
)

// harness is a migrated topic set on the real local Kafka with a producer
// for the reconciler's inputs and readers for its outputs.
type harness struct {
	t    testing.TB
	cfg  *config.Config
	prod *kafka.Producer
	// writers > 1: versions may briefly go back between instances.
	writers int
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	cfg, _ := testenv.Migrated(t)
	h := &harness{t: t, cfg: cfg, prod: kafka.NewProducer(cfg.KafkaBrokers, kafka.WriterOptions{}), writers: 1}
	t.Cleanup(func() { h.prod.Close() })
	// The CDC topics, as the CDC stage creates them.
	var specs []kafka.TopicSpec
	for _, name := range DefaultSettings().CDCTopics() {
		specs = append(specs, migrate.TopicSpec(cfg, schemas.Topic{Name: name, Retention: 30 * 24 * time.Hour}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.NewClient(cfg.KafkaBrokers).EnsureTopics(ctx, specs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var names []string
		for _, sp := range specs {
			names = append(names, sp.Name)
		}
		_ = kafka.NewClient(cfg.KafkaBrokers).DeleteTopics(context.Background(), names...)
	})
	return h
}

// start runs a Reconciler in this process until the test ends.
func (h *harness) start(o Options) *Reconciler {
	h.t.Helper()
	r, stop := h.run(o)
	h.t.Cleanup(stop)
	return r
}

// startStoppable runs a Reconciler with default options and returns its stop.
func (h *harness) startStoppable() (stop func()) {
	h.t.Helper()
	_, stop = h.run(Options{})
	h.t.Cleanup(stop)
	return stop
}

// run starts a Reconciler, waits until it is ready, and returns a stop
// function that cancels it and waits for Run to return (safe to call twice).
func (h *harness) run(o Options) (*Reconciler, func()) {
	h.t.Helper()
	if o.Settings.UsersTable == "" {
		o.Settings = DefaultSettings()
	}
	level := "warn"
	if os.Getenv("LR_TEST_LOG") != "" {
		level = "debug"
	}
	health := obs.NewHealth()
	env := &app.Env{Cfg: h.cfg, Log: obs.NewLogger(os.Stderr, level), Health: health, Mux: http.NewServeMux()}
	r, err := New(env, o)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					h.t.Errorf("reconciler: %v", err)
				}
			case <-time.After(30 * time.Second):
				h.t.Error("reconciler did not stop within 30s")
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for !r.ready.Load() {
		if time.Now().After(deadline) {
			stop()
			h.t.Fatal("reconciler not ready after 30s")
		}
		// Ready is wrong only if the stage was still rebuilding after the
		// check answered (it may have finished while the check ran).
		if ready, detail := health.Result(context.Background()); ready && !r.ready.Load() {
			h.t.Fatalf("readiness says ready while rebuilding: %v", detail)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r, stop
}

func (h *harness) send(in ...input) {
	h.t.Helper()
	msgs := make([]kafka.Message, len(in))
	for i, x := range in {
		msgs[i] = kafka.Message{Topic: h.cfg.Topic(x.topic), Key: []byte(x.key), Value: x.value}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.prod.Write(ctx, msgs...); err != nil {
		h.t.Fatalf("send: %v", err)
	}
}

func rawInput(raw schemas.RawEvent) input {
	b, _ := json.Marshal(raw)
	return input{topic: "raw." + raw.Provider, key: raw.ObjectID, value: b}
}

func stripeInput(e fixture.Event) input { return rawInput(e.Raw(time.Now())) }

func changeInput(c schemas.Change) input {
	b, _ := json.Marshal(c)
	k, _ := json.Marshal(c.Key)
	return input{topic: schemas.CDCTopic(c.Schema, c.Table), key: string(k), value: b}
}

func sinkInput(r schemas.SinkResult) input {
	b, _ := json.Marshal(r)
	return input{topic: "sink.results", key: r.CustomerID, value: b}
}

// outputs is what the reconciler has written: the latest record per key of
// the compacted topics, and every decision.
type outputs struct {
	identity    map[string]schemas.Identity
	entitlement map[string]schemas.Entitlement
	history     map[string][]schemas.Entitlement // every entitlement record per customer
	mismatch    map[string]schemas.Mismatch
	decisions   []schemas.Decision
	seen        map[string]SeenEvent
	dlq         []schemas.DeadLetter
}

// live returns the identities that did not lose a merge.
func (o *outputs) live() map[string]schemas.Identity {
	out := map[string]schemas.Identity{}
	for k, v := range o.identity {
		if v.MergedInto == "" {
			out[k] = v
		}
	}
	return out
}

func (o *outputs) decisionsOf(customer, kind string) []schemas.Decision {
	var out []schemas.Decision
	for _, d := range o.decisions {
		if d.CustomerID == customer && (kind == "" || d.Kind == kind) {
			out = append(out, d)
		}
	}
	return out
}

func readAll[T any](h *harness, topic string, fn func(key string, v T, m kafka.Message)) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := kafka.ReadToEnd(ctx, h.cfg.KafkaBrokers, h.cfg.Topic(topic), func(m kafka.Message) error {
		var v T
		if err := json.Unmarshal(m.Value, &v); err != nil {
			h.t.Errorf("%s: undecodable record: %v", topic, err)
			return nil
		}
		fn(string(m.Key), v, m)
		return nil
	})
	if err != nil {
		h.t.Fatalf("read %s: %v", topic, err)
	}
}

func (h *harness) outputs(withSeen bool) *outputs {
	h.t.Helper()
	o := &outputs{identity: map[string]schemas.Identity{}, entitlement: map[string]schemas.Entitlement{}, history: map[string][]schemas.Entitlement{},
		mismatch: map[string]schemas.Mismatch{}, seen: map[string]SeenEvent{}}
	readAll(h, "identity", func(k string, v schemas.Identity, _ kafka.Message) {
		if k != v.CustomerID {
			h.t.Errorf("identity keyed %q holds %q", k, v.CustomerID)
		}
		if prev, ok := o.identity[k]; ok && v.Version <= prev.Version && h.writers == 1 {
			h.t.Errorf("identity %s: version %d after %d", k, v.Version, prev.Version)
		}
		o.identity[k] = v
	})
	readAll(h, "entitlements", func(k string, v schemas.Entitlement, _ kafka.Message) {
		if k != v.CustomerID {
			h.t.Errorf("entitlement keyed %q holds %q", k, v.CustomerID)
		}
		if prev, ok := o.entitlement[k]; ok && v.Version <= prev.Version && h.writers == 1 {
			h.t.Errorf("entitlement %s: version %d after %d", k, v.Version, prev.Version)
		}
		o.entitlement[k] = v
		o.history[k] = append(o.history[k], v)
	})
	readAll(h, "mismatches", func(k string, v schemas.Mismatch, _ kafka.Message) { o.mismatch[k] = v })
	readAll(h, "decisions", func(_ string, v schemas.Decision, _ kafka.Message) { o.decisions = append(o.decisions, v) })
	readAll(h, "dlq", func(_ string, v schemas.DeadLetter, _ kafka.Message) { o.dlq = append(o.dlq, v) })
	if withSeen {
		readAll(h, "reconcile.seen", func(k string, v SeenEvent, _ kafka.Message) { o.seen[k] = v })
	}
	return o
}

// waitFor polls the outputs until cond holds.
func (h *harness) waitFor(what string, timeout time.Duration, cond func(o *outputs) bool) *outputs {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		o := h.outputs(false)
		if cond(o) {
			return o
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("waiting for %s: timed out after %s; live identities %d, entitlements %d", what, timeout, len(o.live()), len(o.entitlement))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// expected computes the state a clean run over inputs' facts must end in.
func expectedState(t testing.TB, facts []*Fact) map[string]custSnap {
	return snapshot(play(exampleMapping(t), time.Now(), facts, false))
}

// compareState checks the compacted outputs against the expected state:
// every live customer, its identity, entitlement (version included) and open
// findings, and nothing else.
func compareState(t testing.TB, o *outputs, want map[string]custSnap) []string {
	var diffs []string
	live := o.live()
	if len(live) != len(want) {
		diffs = append(diffs, "live customers: got "+itoa(int64(len(live)))+", want "+itoa(int64(len(want))))
	}
	for id, w := range want {
		got, ok := live[id]
		if !ok {
			diffs = append(diffs, "missing customer "+id)
			continue
		}
		// Versions count the facts applied when the record was written: a
		// record unchanged by later facts keeps an older one.
		if !sameIdentity(got, w.Identity) || got.Version < 1 || got.Version > w.Count {
			diffs = append(diffs, "identity "+id+": got "+jsonString(got)+" want "+jsonString(w.Identity))
		}
		ge := o.entitlement[id]
		if !sameEntitlement(ge, w.Entitlement) || ge.Version < 1 || ge.Version > w.Count {
			diffs = append(diffs, "entitlement "+id+": got "+jsonString(ge)+" want "+jsonString(w.Entitlement)+" facts "+itoa(w.Count))
		}
		var open []string
		for _, m := range o.mismatch {
			if m.CustomerID == id && m.State == MismatchOpen {
				open = append(open, m.Kind+"/"+m.System)
			}
		}
		var wantOpen []string
		for _, f := range w.Findings {
			wantOpen = append(wantOpen, f.Kind+"/"+f.System)
		}
		sort.Strings(open)
		sort.Strings(wantOpen)
		if !eqStrings(open, wantOpen) {
			diffs = append(diffs, "findings "+id+": got "+jsonString(open)+" want "+jsonString(wantOpen))
		}
	}
	for _, m := range o.mismatch {
		if _, ok := want[m.CustomerID]; !ok && m.State == MismatchOpen {
			diffs = append(diffs, "open finding on a non-live customer: "+m.MismatchID)
		}
	}
	return diffs
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
