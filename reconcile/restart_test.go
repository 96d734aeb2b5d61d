package reconcile

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/testenv"
)

// load generates histories for many people, each event once, then a fifth
// of them again, shuffled: what a day of webhooks and CDC looks like.
func load(t testing.TB, seeds, offset int64) (facts []*Fact, in []input) {
	r := rand.New(rand.NewSource(offset))
	for seed := offset; seed < offset+seeds; seed++ {
		g := generate(t, seed)
		facts = append(facts, g.facts...)
		in = append(in, g.inputs...)
	}
	n := len(in)
	for i := 0; i < n; i++ {
		if r.Intn(5) == 0 {
			in = append(in, in[i])
		}
	}
	r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
	return facts, in
}

// waitForState polls the compacted outputs until they match want.
func (h *harness) waitForState(want map[string]custSnap, timeout time.Duration) *outputs {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		o := h.outputs(true)
		diffs := compareState(h.t, o, want)
		if len(diffs) == 0 {
			return o
		}
		if time.Now().After(deadline) {
			if len(diffs) > 10 {
				diffs = append(diffs[:10], fmt.Sprintf("… and %d more", len(diffs)-10))
			}
			h.t.Fatalf("outputs differ from a clean run after %s:\n%s", timeout, strings.Join(diffs, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func factLogSize(t testing.TB, h *harness) int64 {
	ends, err := kafka.NewClient(h.cfg.KafkaBrokers).EndOffsets(context.Background(), h.cfg.Topic("reconcile.seen"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ends {
		n += e
	}
	return n
}

// TestIntegrationKill9 runs the launchready binary, kills it with SIGKILL in
// the middle of a load, starts it again, and checks the compacted state is
// the state a clean run computes from the same events, with every event in
// the fact log.
func TestIntegrationKill9(t *testing.T) {
	h := newHarness(t)
	bin := filepath.Join(t.TempDir(), "launchready")
	build := exec.Command("go", "build", "-o", bin, "./cmd/launchready")
	build.Dir = testenv.Root()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	logs, err := os.Create(filepath.Join(t.TempDir(), "reconcile.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "reconcile")
		cmd.Env = append(os.Environ(),
			"LR_KAFKA_BROKERS="+strings.Join(h.cfg.KafkaBrokers, ","), "LR_TOPIC_PREFIX="+h.cfg.TopicPrefix,
			"LR_KAFKA_PARTITIONS=3", "LR_HTTP_ADDR=127.0.0.1:0", "LR_LOG_LEVEL=info")
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Whatever happens to the test, the process does not outlive it.
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
		return cmd
	}
	facts, in := load(t, 400, 100000)
	want := expectedState(t, facts)
	distinct := map[string]bool{}
	for _, f := range facts {
		distinct[f.Key] = true
	}

	first := start()
	var killedAt int64
	second := (*exec.Cmd)(nil)
	const chunk = 250
	for i := 0; i < len(in); i += chunk {
		h.send(in[i:min(i+chunk, len(in))]...)
		time.Sleep(60 * time.Millisecond)
		if second == nil && i >= len(in)/2 {
			// Wait until the first process is visibly working, then kill it.
			deadline := time.Now().Add(30 * time.Second)
			for killedAt = factLogSize(t, h); killedAt == 0 && time.Now().Before(deadline); killedAt = factLogSize(t, h) {
				time.Sleep(50 * time.Millisecond)
			}
			if err := first.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = first.Wait()
			second = start()
		}
	}
	if killedAt == 0 || killedAt >= int64(len(distinct)) {
		t.Fatalf("the kill did not land during the load: %d of %d facts logged", killedAt, len(distinct))
	}
	o := h.waitForState(want, 90*time.Second)
	for k := range distinct {
		if _, ok := o.seen[k]; !ok {
			t.Errorf("event %s missing from the fact log", k)
		}
	}
	// A graceful stop: SIGTERM drains and exits 0.
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		b, _ := os.ReadFile(logs.Name())
		t.Fatalf("after SIGTERM: %v\n%s", err, b)
	}
	t.Logf("%d inputs (%d distinct events) for %d customers; killed with %d facts logged", len(in), len(distinct), len(want), killedAt)
}

// TestIntegrationTwoInstances runs two reconcilers in one consumer group:
// each applies the partitions it is given and folds in the other's facts
// from the fact log; together they must end in a clean run's state.
func TestIntegrationTwoInstances(t *testing.T) {
	h := newHarness(t)
	h.writers = 2
	h.start(Options{})
	h.start(Options{})
	facts, in := load(t, 250, 200000)
	want := expectedState(t, facts)
	for i := 0; i < len(in); i += 200 {
		h.send(in[i:min(i+200, len(in))]...)
		time.Sleep(20 * time.Millisecond)
	}
	h.waitForState(want, 90*time.Second)
}

// TestIntegrationRestartRebuilds stops a reconciler, starts a new one on the
// same topics, and checks it rebuilt every customer from the fact log: it
// writes nothing new for unchanged customers, and a later event for an
// existing customer updates that customer rather than creating another.
func TestIntegrationRestartRebuilds(t *testing.T) {
	h := newHarness(t)
	facts, in := load(t, 60, 300000)
	want := expectedState(t, facts)
	stop := h.startStoppable()
	h.send(in...)
	before := h.waitForState(want, 60*time.Second)
	stop()
	r := h.start(Options{})
	if r.state.Len() != len(want) {
		t.Fatalf("rebuilt %d customers, want %d", r.state.Len(), len(want))
	}
	time.Sleep(time.Second)
	after := h.outputs(false)
	if len(after.decisions) != len(before.decisions) {
		t.Fatalf("a restart wrote %d decisions", len(after.decisions)-len(before.decisions))
	}
	for id, e := range before.entitlement {
		if after.entitlement[id].Version != e.Version {
			t.Fatalf("a restart re-emitted %s", id)
		}
	}
}
