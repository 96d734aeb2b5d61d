package cdc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/testenv"
)

// buildBinary builds cmd/launchready into the test's temporary folder.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "launchready")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/launchready")
	cmd.Dir = testenv.Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/launchready: %v\n%s", err, out)
	}
	return bin
}

// cdcProcess is `launchready cdc` running as a child process.
type cdcProcess struct {
	t       *testing.T
	bin     string
	env     []string
	log     *os.File
	cmd     *exec.Cmd
	exited  chan error
	started int
}

func (p *cdcProcess) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, "cdc", "--heartbeat-interval=200ms")
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	dieWithParent(p.cmd)
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.started++
	exited := make(chan error, 1)
	p.exited = exited
	cmd := p.cmd
	go func() { exited <- cmd.Wait() }()
}

func (p *cdcProcess) kill() {
	p.t.Helper()
	select {
	case err := <-p.exited:
		p.t.Fatalf("launchready cdc exited by itself: %v\n%s", err, p.logTail())
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *cdcProcess) logTail() string {
	b, _ := os.ReadFile(p.log.Name())
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// TestKill9: `launchready cdc` is killed with SIGKILL at random moments
// (the first one usually during the initial snapshot) while writers insert,
// update and delete, and restarted each time. Afterwards every committed
// change is in Kafka at least once; a change delivered twice carries the same
// LSN both times; with repeats removed, every key's history is exact.
func TestKill9(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	users := f.counterTable("k9users", 20000)
	events := f.table("k9events")
	f.exec(`CREATE TABLE ` + events + ` (id bigserial PRIMARY KEY, user_id bigint NOT NULL, kind text NOT NULL)`)
	f.tablesSetting(users, events)
	bin := buildBinary(t)

	logFile, err := os.Create(filepath.Join(t.TempDir(), "cdc.log"))
	if err != nil {
		t.Fatal(err)
	}
	p := &cdcProcess{t: t, bin: bin, log: logFile, env: append(os.Environ(),
		"LR_KAFKA_BROKERS="+strings.Join(f.cfg.KafkaBrokers, ","),
		"LR_POSTGRES_URL="+f.cfg.PostgresURL,
		"LR_STATE_POSTGRES_URL="+f.cfg.StatePostgresURL,
		"LR_TOPIC_PREFIX="+f.cfg.TopicPrefix,
		"LR_KAFKA_PARTITIONS=3",
		"LR_CDC_SLOT="+f.cfg.CDCSlot,
		"LR_CDC_PUBLICATION="+f.cfg.CDCPublication,
		"LR_CDC_TABLES=public."+users+",public."+events,
		"LR_HTTP_ADDR=127.0.0.1:0",
		"LR_SHUTDOWN_TIMEOUT=10s",
	)}
	t.Cleanup(func() {
		if p.cmd != nil && p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.exited
		}
		if t.Failed() {
			t.Logf("launchready cdc log:\n%s", p.logTail())
		}
	})
	col := f.collect(users, events)

	// The load: counter updates, inserts and deletes on users; appends to
	// events, whose committed ids are remembered.
	stop := make(chan struct{})
	waitUsers := writeLoad(t, f.app, users, 2, 25000, stop)
	var mu sync.Mutex
	var committed []int64
	var ewg sync.WaitGroup
	ewg.Add(1)
	go func() {
		defer ewg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var id int64
			err := f.app.QueryRow(context.Background(), `INSERT INTO `+events+` (user_id, kind) VALUES ($1, 'login') RETURNING id`, rand.IntN(25000)).Scan(&id)
			if err != nil {
				t.Errorf("insert event: %v", err)
				return
			}
			mu.Lock()
			committed = append(committed, id)
			mu.Unlock()
		}
	}()

	p.start()
	const kills = 4
	for i := 0; i < kills; i++ {
		wait := time.Duration(100+rand.IntN(1200)) * time.Millisecond
		if i == 0 {
			wait = time.Duration(50+rand.IntN(400)) * time.Millisecond // likely mid-snapshot
		}
		time.Sleep(wait)
		p.kill()
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		p.start()
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	ops := waitUsers()
	ewg.Wait()

	f.waitCaughtUp(60 * time.Second)
	final := tableState(t, f.app, users)
	mu.Lock()
	ids := append([]int64(nil), committed...)
	mu.Unlock()
	recs := col.waitFor(t, 60*time.Second, "every committed change", func(rs []change) bool {
		seen := map[float64]bool{}
		last := map[string]change{}
		for _, r := range rs {
			if r.Table == events {
				seen[r.After["id"].(float64)] = true
			} else {
				last[r.Key] = r
			}
		}
		for _, id := range ids {
			if !seen[float64(id)] {
				return false
			}
		}
		for k, n := range final {
			if l, ok := last[k]; !ok || l.Op == "d" || l.After["n"] != n {
				return false
			}
		}
		return true
	})

	// A repeated change is recognisable: same key, same op, same LSN.
	// (Snapshot rows are not changes: a snapshot taken again after a crash
	// copies the rows anew, at its own point.)
	lsnOf := map[string]string{}
	dups := 0
	for _, r := range recs {
		if r.Table != events || r.Op == "r" {
			continue
		}
		id := r.Key + r.Op
		if prev, ok := lsnOf[id]; ok {
			dups++
			if prev != r.Source.LSN {
				t.Errorf("event %s %s delivered at LSN %s and again at %s", r.Key, r.Op, prev, r.Source.LSN)
			}
		}
		lsnOf[id] = r.Source.LSN
	}
	// With repeats removed and each key's records taken in WAL order (as a
	// consumer must: a restart repeats records it wrote before, and writes
	// still in flight when a producer was killed may land after its
	// successor's), each key's history is exact: nothing is missing.
	var unique []change
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Table != users {
			continue
		}
		id := r.Key + "|" + r.Op + "|" + r.Source.LSN + "|" + fmt.Sprint(r.Source.Snapshot)
		if seen[id] {
			dups++
			continue
		}
		seen[id] = true
		unique = append(unique, r)
	}
	groups, reordered := byLSN(t, unique)
	checkCounterStream(t, groups, f.topic(users), final, true)

	// A graceful stop after all that exits cleanly.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("launchready cdc after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("launchready cdc did not stop within 30s of SIGTERM")
	}
	t.Logf("%d starts, %d user writes, %d events, %d records, %d repeats, %d keys whose first copies Kafka holds out of WAL order", p.started, ops, len(ids), len(recs), dups, reordered)
}

// byLSN groups records by key in WAL order: by commit position, a snapshot
// row before the changes committed at its point, then by change position.
// It also counts the keys whose Kafka order differs.
func byLSN(t testing.TB, recs []change) (map[string][]change, int) {
	groups := byKey(recs)
	reordered := 0
	for k, g := range groups {
		sorted := append([]change(nil), g...)
		sort.SliceStable(sorted, func(i, j int) bool {
			a, b := sorted[i], sorted[j]
			ac, bc := lsn(t, a.Source.CommitLSN), lsn(t, b.Source.CommitLSN)
			if ac != bc {
				return ac < bc
			}
			if a.Source.Snapshot != b.Source.Snapshot {
				return a.Source.Snapshot
			}
			return lsn(t, a.Source.LSN) < lsn(t, b.Source.LSN)
		})
		for i := range g {
			if g[i].Offset != sorted[i].Offset {
				reordered++
				break
			}
		}
		groups[k] = sorted
	}
	return groups, reordered
}
