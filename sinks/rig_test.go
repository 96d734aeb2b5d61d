package sinks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/httpx"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/internal/migrate"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/testenv"
	"github.com/launchready/launchready/schemas"
	circlesim "github.com/launchready/launchready/simulate/circle"
	kitsim "github.com/launchready/launchready/simulate/kit"
	"github.com/launchready/launchready/sinks"
	"github.com/launchready/launchready/sinks/circle"
	"github.com/launchready/launchready/sinks/kit"
	"github.com/launchready/launchready/sinks/sinktest"
)

// rigOptions shape the simulators of a rig: their rate limits (the
// client's limiters follow them) and faults.
type rigOptions struct {
	kitLimit, circleLimit   int
	kitWindow, circleWindow time.Duration
	kitFaults               kitsim.Faults
	circleFaults            circlesim.Faults
	// arrivals records the arrival time of every API request.
	arrivals bool
	// productionMargin builds the client limiters with kit.NewLimiter and
	// circle.NewLimiter, whose margin is 2% of the window (at least 250 ms).
	productionMargin bool
}

// rig is the real Kafka of the local stack (topics of the test's own)
// and both simulators listening on local ports.
type rig struct {
	t          testing.TB
	cfg        *config.Config
	m          *mapping.Mapping
	kit        *kitsim.Server
	circle     *circlesim.Server
	kitURL     string
	circleURL  string
	kitLim     *httpx.Limiter
	circleLim  *httpx.Limiter
	prod       *kafka.Producer
	mu         sync.Mutex
	kitArrived []time.Time
	cirArrived []time.Time
}

func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	cfg := testenv.Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := kafka.NewClient(cfg.KafkaBrokers)
	specs := migrate.TopicSpecs(cfg)
	if err := cl.EnsureTopics(ctx, specs); err != nil {
		t.Fatalf("topics: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var names []string
		for _, s := range specs {
			names = append(names, s.Name)
		}
		_ = cl.DeleteTopics(ctx, names...)
	})
	m, err := mapping.Example()
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, cfg: cfg, m: m, prod: kafka.NewProducer(cfg.KafkaBrokers, kafka.WriterOptions{})}
	t.Cleanup(func() { r.prod.Close() })
	if o.kitLimit == 0 {
		o.kitLimit, o.kitWindow = kit.RateLimit, kit.RateWindow
	}
	if o.circleLimit == 0 {
		o.circleLimit, o.circleWindow = circle.RateLimit, circle.RateWindow
	}
	tags, fields := kitsim.Seed(m)
	r.kit = kitsim.New(kitsim.Options{Tags: tags, Fields: fields, Limit: o.kitLimit, Window: o.kitWindow, Faults: o.kitFaults, Seed: 11})
	groups, mtags, pfields := circlesim.Seed(m)
	r.circle = circlesim.New(circlesim.Options{AccessGroups: groups, MemberTags: mtags, ProfileFields: pfields, Limit: o.circleLimit, Window: o.circleWindow, Faults: o.circleFaults, Seed: 11})
	r.kitURL = r.serve(r.kit.Handler(), &r.kitArrived, o.arrivals)
	r.circleURL = r.serve(r.circle.Handler(), &r.cirArrived, o.arrivals)
	t.Cleanup(func() { r.kit.Close() })
	if o.productionMargin {
		r.kitLim = kit.NewLimiter(o.kitLimit, o.kitWindow)
		r.circleLim = circle.NewLimiter(o.circleLimit, o.circleWindow)
	} else {
		// Shrunk windows keep the margin the limiters keep at Kit's real
		// window (2% of 60 s): arrival jitter is absolute, and a loaded
		// test machine delays requests by hundreds of milliseconds.
		margin := kit.RateWindow / 50
		r.kitLim = httpx.NewLimiter(o.kitLimit, o.kitWindow+margin)
		r.circleLim = httpx.NewLimiter(o.circleLimit, o.circleWindow+margin)
	}
	return r
}

func (r *rig) serve(h http.Handler, arrived *[]time.Time, record bool) string {
	if record {
		next := h
		h = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if !strings.HasPrefix(req.URL.Path, "/_sim/") {
				r.mu.Lock()
				*arrived = append(*arrived, time.Now())
				r.mu.Unlock()
			}
			next.ServeHTTP(w, req)
		})
	}
	srv := httptest.NewServer(h)
	r.t.Cleanup(srv.Close)
	return srv.URL
}

// providers returns a Kit and a Circle sink on the rig's simulators, with
// the rig's limiters (shared by every sink of the rig, as by one process).
func (r *rig) providers() []sinks.Provider {
	n, lo, hi := 10, 20*time.Millisecond, 500*time.Millisecond
	return []sinks.Provider{
		kit.New(kit.Options{BaseURL: r.kitURL + "/v4", APIKey: config.Secret(r.kit.APIKey()), Limiter: r.kitLim, MaxRetries: n, RetryWaitMin: lo, RetryWaitMax: hi}),
		circle.New(circle.Options{
			BaseURL: r.circleURL + circlesim.Base, Token: config.Secret(r.circle.Token()), Limiter: r.circleLim,
			Budget: httpx.NewBudget(1_000_000, nil, nil), StampField: r.m.Circle.ProfileFields.Synced,
			MaxRetries: n, RetryWaitMin: lo, RetryWaitMax: hi,
		}),
	}
}

func (r *rig) publish(es ...*schemas.Entitlement) {
	r.t.Helper()
	var msgs []kafka.Message
	for _, e := range es {
		m, err := kafka.JSON(r.cfg.Topic("entitlements"), e.CustomerID, "entitlement/1", e)
		if err != nil {
			r.t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	// Fresh topics may still be electing leaders: retry for a while.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.prod.Write(ctx, msgs...)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stage returns a sink stage for both providers.
func (r *rig) stage(o sinks.Options) *sinks.Stage {
	r.t.Helper()
	return r.stageOf(o, r.providers()...)
}

// stageOf returns a sink stage for ps.
func (r *rig) stageOf(o sinks.Options, ps ...sinks.Provider) *sinks.Stage {
	r.t.Helper()
	if o.RetryMin == 0 {
		o.RetryMin, o.RetryMax = 50*time.Millisecond, time.Second
	}
	log := obs.Component(obs.NewLogger(nil, "warn"), "sink")
	o.Log = log
	health := obs.NewHealth()
	env := &app.Env{Cfg: r.cfg, Log: log, Health: health, Mux: health.Mux()}
	st, err := sinks.New(env, r.m, o, nil, ps...)
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

// start runs a sink stage for both providers until the returned stop is
// called; stop returns the stage's error.
func (r *rig) start(o sinks.Options) (*sinks.Stage, func() error) {
	r.t.Helper()
	st := r.stage(o)
	return st, r.run(st)
}

// run runs st until the returned stop is called; stop returns its error.
func (r *rig) run(st *sinks.Stage) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	var once sync.Once
	var result error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				result = fmt.Errorf("stage did not stop")
			}
		})
		return result
	}
	r.t.Cleanup(func() { _ = stop() })
	return stop
}

// problems lists every difference between the simulators and what the
// mapping wants for es.
func (r *rig) problems(es ...*schemas.Entitlement) []string {
	ps := r.providers()
	var out []string
	for _, e := range es {
		out = append(out, sinktest.Problems(ps[0], r.m, e, sinktest.ObserveKit(r.kit, e.Email))...)
		out = append(out, sinktest.Problems(ps[1], r.m, e, sinktest.ObserveCircle(r.circle, e.Email))...)
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func (r *rig) waitFor(what string, timeout time.Duration, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitConverged waits until both simulators hold what the mapping wants.
func (r *rig) waitConverged(timeout time.Duration, es ...*schemas.Entitlement) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p := r.problems(es...)
		if len(p) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("not converged after %v: %v", timeout, p)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSynced waits until every worker of st has synced n customers.
func (r *rig) waitSynced(st *sinks.Stage, n int64, timeout time.Duration) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("%d customers synced per provider", n), timeout, func() bool {
		for _, w := range st.Workers() {
			if w.Stats().Customers < n {
				return false
			}
		}
		return true
	})
}

// results reads lr.sink.results from the beginning.
func (r *rig) results() []schemas.SinkResult {
	r.t.Helper()
	var out []schemas.SinkResult
	r.read("sink.results", func(b []byte) error {
		var x schemas.SinkResult
		out = append(out, x)
		return json.Unmarshal(b, &out[len(out)-1])
	})
	return out
}

// dead reads lr.dlq from the beginning.
func (r *rig) dead() []schemas.DeadLetter {
	r.t.Helper()
	var out []schemas.DeadLetter
	r.read("dlq", func(b []byte) error {
		var x schemas.DeadLetter
		out = append(out, x)
		return json.Unmarshal(b, &out[len(out)-1])
	})
	return out
}

func (r *rig) read(topic string, fn func([]byte) error) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.ReadToEnd(ctx, r.cfg.KafkaBrokers, r.cfg.Topic(topic), func(m kafka.Message) error { return fn(m.Value) }); err != nil {
		r.t.Fatal(err)
	}
}

func customers(n int, prefix string, f func(i int) (plan, status string, access bool)) []*schemas.Entitlement {
	var out []*schemas.Entitlement
	for i := range n {
		plan, status, access := f(i)
		out = append(out, sinktest.Entitlement(fmt.Sprintf("cus_%s%03d", prefix, i), fmt.Sprintf("%s%03d@example.org", prefix, i), plan, status, access, 1))
	}
	return out
}
