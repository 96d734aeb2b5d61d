package audit

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/migrate"
	"github.com/launchready/launchready/internal/testenv"
	"github.com/launchready/launchready/schemas"
)

// TestClickHouseOutage stops ClickHouse while records stream in: the writer
// stops consuming, /readyz says why, nothing is acknowledged; once
// ClickHouse is back every record arrives, each once.
func TestClickHouseOutage(t *testing.T) {
	t.Parallel()
	cfg := testenv.Config(t)
	ch := privateClickHouse(t)
	cfg.ClickHouseAddr = ch.Addr
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := kafka.NewClient(cfg.KafkaBrokers).EnsureTopics(ctx, migrate.TopicSpecs(cfg)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.DropTopicsAndDB(cfg) })
	if _, err := migrate.ClickHouse(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	h := harnessFor(t, cfg)
	w := h.start(Options{MaxWait: 100 * time.Millisecond, RetryMin: 100 * time.Millisecond, RetryMax: time.Second}, nil)

	// A producer streams sink results until told to stop.
	var (
		mu       sync.Mutex
		produced int
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			r := schemas.SinkResult{V: 1, ActionID: fmt.Sprintf("a%04d", i), CustomerID: fmt.Sprintf("c_%d", i%7),
				Provider: "circle", Action: "tag", Status: schemas.SinkOK, At: time.Now()}
			m, err := kafka.JSON(cfg.Topic("sink.results"), r.CustomerID, "sink/1", r)
			if err != nil {
				t.Error(err)
				return
			}
			wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = h.prod.Write(wctx, m)
			wcancel()
			if err != nil {
				t.Errorf("produce: %v", err)
				return
			}
			mu.Lock()
			produced++
			mu.Unlock()
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return produced
	}

	h.waitFor(60*time.Second, map[string]int{"sink_actions": 20})
	if ready, detail := h.health.Result(ctx); !ready {
		t.Fatalf("not ready while ClickHouse is up: %v", detail)
	}

	ch.Stop()
	stoppedAt := count()
	// The writer notices on its next insert and says so on /readyz.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready, detail := h.health.Result(context.Background())
		if !ready && strings.Contains(detail["audit"], "ClickHouse inserts failing since") && strings.Contains(detail["audit"], "consumption paused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness during the outage: ready=%v %v", ready, detail)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Records keep coming while ClickHouse is down.
	for count() < stoppedAt+50 {
		time.Sleep(50 * time.Millisecond)
	}
	if s := w.Status(); s.FailingAt.IsZero() || s.Attempts < 2 || s.Waiting == 0 {
		t.Errorf("status during the outage: %+v", s)
	}

	ch.Start()
	time.Sleep(500 * time.Millisecond) // a few more records after the restart
	close(stop)
	<-done
	total := count()
	h.waitCommitted(w, 60*time.Second)
	if got := h.distinct("sink_actions", "record_id"); got != total {
		t.Fatalf("%d records in ClickHouse, %d produced", got, total)
	}
	var missing, extra int64
	if err := h.conn.QueryRow(ctx, fmt.Sprintf(`SELECT %d - uniqExact(action_id), uniqExact(action_id) - uniqExactIf(action_id, action_id < 'a%04d')
		FROM %s.sink_actions`, total, total, cfg.ClickHouseDatabase)).Scan(&missing, &extra); err != nil {
		t.Fatal(err)
	}
	if missing != 0 || extra != 0 {
		t.Errorf("%d records missing, %d unexpected", missing, extra)
	}
	if ready, detail := h.health.Result(ctx); !ready {
		t.Errorf("not ready after ClickHouse came back: %v", detail)
	}
	if s := w.Status(); !s.FailingAt.IsZero() || s.LastError != "" {
		t.Errorf("status after recovery: %+v", s)
	}
}

// TestNewCDCTopic: a CDC topic created while the writer runs is picked up
// at the next refresh, from its first record.
func TestNewCDCTopic(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w := h.start(Options{TopicRefresh: 300 * time.Millisecond, MaxWait: 100 * time.Millisecond}, nil)
	h.waitFor(30*time.Second, map[string]int{}) // the writer is up
	deadline := time.Now().Add(30 * time.Second)
	for len(w.Status().Topics) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	topic := schemas.CDCTopic("billing", "orders")
	ensureTopic(t, h, h.cfg.Topic(topic))
	h.produce(topic, `{"id":7}`, "cdc/1", map[string]any{"v": 1, "op": "c", "schema": "billing", "table": "orders",
		"key": map[string]any{"id": 7}, "after": map[string]any{"id": 7, "user_id": "u1"},
		"source": map[string]any{"lsn": "0/AA", "commit_time": time.Now()}}, time.Time{})
	h.waitFor(30*time.Second, map[string]int{"cdc_changes": 1})
	if !strings.Contains(strings.Join(w.Status().Topics, ","), h.cfg.Topic(topic)) {
		t.Errorf("topics = %v", w.Status().Topics)
	}
}

// TestSchemaCheck: a database migrated with another DDL is refused at start,
// naming what is missing.
func TestSchemaCheck(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	if err := h.conn.Exec(context.Background(), "ALTER TABLE "+h.cfg.ClickHouseDatabase+".raw_events DROP COLUMN payload_error"); err != nil {
		t.Fatal(err)
	}
	w := h.start(Options{}, nil)
	select {
	case err := <-w.done:
		if err == nil || !strings.Contains(err.Error(), "raw_events.payload_error") || !strings.Contains(err.Error(), "launchready migrate") {
			t.Errorf("Run = %v", err)
		}
		w.done <- err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not refuse the schema")
	}
}

// localClickHouse is a ClickHouse server of the test's own, in a temporary
// folder on free ports, that the test stops and starts.
//
// It stands in for testenv.PrivateClickHouse: scripts/stack.sh starts
// ClickHouse as `(cd "$CH" && setsid clickhouse-server … &)`, whose
// backgrounded subshell keeps the caller's output pipe open (so the
// helper's CombinedOutput never returns) and is what the pid file names (so
// `down` kills the subshell, not the server).
type localClickHouse struct {
	t    testing.TB
	dir  string
	port int
	Addr string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func privateClickHouse(t testing.TB) *localClickHouse {
	t.Helper()
	if _, err := exec.LookPath("clickhouse-server"); err != nil {
		t.Fatalf("clickhouse-server not installed (make stack-up installs it): %v", err)
	}
	dir := t.TempDir()
	port, httpPort := freePort(t), freePort(t)
	c := &localClickHouse{t: t, dir: dir, port: port, Addr: "127.0.0.1:" + strconv.Itoa(port)}
	config := `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>` + dir + `/server.log</log><errorlog>` + dir + `/server.err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>` + strconv.Itoa(port) + `</tcp_port>
  <http_port>` + strconv.Itoa(httpPort) + `</http_port>
  <max_connections>64</max_connections>
  <mark_cache_size>67108864</mark_cache_size>
  <path>` + dir + `/data/</path>
  <tmp_path>` + dir + `/tmp/</tmp_path>
  <user_files_path>` + dir + `/user_files/</user_files_path>
  <format_schema_path>` + dir + `/format_schemas/</format_schema_path>
  <users_config>` + dir + `/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
</yandex>`
	users := `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>1000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>`
	for name, body := range map[string]string{"config.xml": config, "users.xml": users} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.Stop)
	c.Start()
	return c
}

// Start starts the server (keeping its data) and waits until it answers.
func (c *localClickHouse) Start() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(c.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command("clickhouse-server", "--config-file="+filepath.Join(c.dir, "config.xml"))
	cmd.Dir, cmd.Stdout, cmd.Stderr = c.dir, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("start clickhouse-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	c.cmd, c.done = cmd, done
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command("clickhouse-client", "--port", strconv.Itoa(c.port), "--query", "SELECT 1").CombinedOutput()
		if err == nil && strings.TrimSpace(string(out)) == "1" {
			return
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(c.dir, "server.err.log"))
			c.t.Fatalf("clickhouse-server exited at start:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("clickhouse-server on %s does not answer: %s", c.Addr, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 30 s) and waits for it.
func (c *localClickHouse) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	c.cmd = nil
	if conn, err := net.DialTimeout("tcp", c.Addr, time.Second); err == nil {
		conn.Close()
		c.t.Errorf("clickhouse on %s still answers after Stop", c.Addr)
	}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
