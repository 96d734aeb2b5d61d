package sinks_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/testenv"
	"github.com/launchready/launchready/schemas"
	circlesim "github.com/launchready/launchready/simulate/circle"
	kitsim "github.com/launchready/launchready/simulate/kit"
)

var (
	binDir   string
	build    sync.Once
	buildErr error
)

func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "launchready-sink-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// buildBinary builds cmd/launchready once for the tests that run it.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "launchready")
	build.Do(func() {
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/launchready")
		cmd.Dir = testenv.Root()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

// sinkEnv is the environment of a `launchready sink` on the rig.
func sinkEnv(r *rig) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LR_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"LR_KAFKA_BROKERS="+strings.Join(r.cfg.KafkaBrokers, ","),
		"LR_TOPIC_PREFIX="+r.cfg.TopicPrefix,
		"LR_HTTP_ADDR=127.0.0.1:0",
		"LR_LOG_LEVEL=warn",
		"LR_SHUTDOWN_TIMEOUT=5s",
		"LR_KIT_API_KEY="+r.kit.APIKey(),
		"LR_KIT_BASE_URL="+r.kitURL+"/v4",
		"LR_CIRCLE_API_TOKEN="+r.circle.Token(),
		"LR_CIRCLE_BASE_URL="+r.circleURL+circlesim.Base,
		"LR_CIRCLE_AUTH_SCHEME=Token",
		"LR_CIRCLE_MONTHLY_QUOTA=1000000",
	)
	return env
}

// sinkProcess starts `launchready sink` against the rig.
func sinkProcess(t *testing.T, bin string, r *rig, logName string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), logName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s:\n%s", logName, b)
		}
	})
	cmd := exec.Command(bin, "sink")
	cmd.Env, cmd.Stdout, cmd.Stderr = sinkEnv(r), logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// A `launchready sink` killed with SIGKILL in the middle of a sync, between
// provider calls and result writes, converges on restart: every customer
// ends as the mapping wants, with no duplicate tag, no second member or
// invitation, and a recorded result.
func TestSinkKilledMidSyncConvergesWithoutDuplicates(t *testing.T) {
	t.Parallel()
	// Slow answers stretch the sync so the kill lands in the middle of it.
	slow := 40 * time.Millisecond
	r := newRig(t, rigOptions{kitFaults: kitsim.Faults{Slow: 1, Delay: slow}, circleFaults: circlesim.Faults{Slow: 1, Delay: slow}})
	bin := buildBinary(t)
	// 18 customers keep both runs under Kit's 120 requests a minute.
	es := customers(18, "kill", func(i int) (string, string, bool) {
		if i%2 == 1 {
			return "starter", schemas.StatusActive, true
		}
		return "pro", schemas.StatusActive, true
	})
	r.publish(es...)

	first := sinkProcess(t, bin, r, "first.log")
	r.waitFor("a third of the writes", 60*time.Second, func() bool {
		return r.kit.Stats().Writes >= 12 && r.circle.Stats().Writes >= 12
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	if len(r.problems(es...)) == 0 {
		t.Fatal("the sync had finished before the kill: nothing was interrupted")
	}
	killedAt := r.kit.Stats().Writes + r.circle.Stats().Writes

	second := sinkProcess(t, bin, r, "second.log")
	r.waitConverged(90*time.Second, es...)
	r.waitFor("a result for every customer and provider", 60*time.Second, func() bool {
		seen := map[string]bool{}
		for _, res := range r.results() {
			if res.Status == schemas.SinkOK || res.Status == schemas.SinkNoop {
				seen[res.Provider+" "+res.CustomerID] = true
			}
		}
		return len(seen) == 2*len(es)
	})
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- second.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("second run did not shut down cleanly: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("second run did not stop within 30s of SIGTERM")
	}

	k, c := r.kit.Stats(), r.circle.Stats()
	if k.DuplicateTags != 0 || c.DuplicateTags != 0 || c.DuplicateGroupAdds != 0 {
		t.Errorf("duplicates after restart: kit tags %d, circle tags %d, circle groups %d", k.DuplicateTags, c.DuplicateTags, c.DuplicateGroupAdds)
	}
	if k.Created != len(es) || c.MembersCreated != len(es) || c.Invitations != len(es) {
		t.Errorf("kit created %d, circle created %d and invited %d: want %d each (never twice)", k.Created, c.MembersCreated, c.Invitations, len(es))
	}
	if k.Violations+c.Violations != 0 {
		t.Errorf("rate-limit violations: kit %d, circle %d", k.Violations, c.Violations)
	}
	if total := k.Writes + c.Writes; total <= killedAt {
		t.Errorf("the restart wrote nothing (%d writes at the kill, %d after): the kill did not interrupt", killedAt, total)
	}
}

// `launchready sink --dry-run` prints the diff of every customer, records
// it, calls no write endpoint and exits.
func TestSinkDryRunCommandPrintsTheDiffAndExits(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	bin := buildBinary(t)
	es := customers(3, "cli", func(i int) (string, string, bool) { return "pro", schemas.StatusActive, true })
	r.publish(es...)
	cmd := exec.Command(bin, "sink", "--dry-run", "--provider", "kit")
	cmd.Env = sinkEnv(r)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sink --dry-run: %v\n%s", err, stderr.String())
	}
	text := string(out)
	for _, e := range es {
		if !strings.Contains(text, "upsert_subscriber") || !strings.Contains(text, e.CustomerID) {
			t.Errorf("no would-be upsert for %s in:\n%s", e.CustomerID, text)
		}
	}
	if !strings.Contains(text, "kit: 3 customers, 3 would change") || strings.Contains(text, "circle") {
		t.Errorf("summary missing or a provider not asked for was synced:\n%s", text)
	}
	if w := r.kit.Stats().Writes + r.circle.Stats().Writes; w != 0 {
		t.Errorf("%d write calls", w)
	}
	if n := len(r.results()); n < 2*len(es) {
		t.Errorf("%d results recorded, want the create and the tag of each customer", n)
	}
}
