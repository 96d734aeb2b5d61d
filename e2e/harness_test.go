// Package e2e runs the launch-checklist scenarios over the real stack and the
// whole pipeline: the launchready binary (`launchready run`, every stage in
// one process) against real Kafka, Postgres and ClickHouse, with the Circle
// and Kit simulators and signed Stripe webhooks from the traffic generator.
// One pipeline serves every scenario of the package; each scenario uses
// customers of its own.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/internal/pg"
	"github.com/launchready/launchready/internal/testenv"
	circlesim "github.com/launchready/launchready/simulate/circle"
	kitsim "github.com/launchready/launchready/simulate/kit"
	"github.com/launchready/launchready/simulate/traffic"
)

// e2eKitLimit is the Kit simulator's and the pipeline's Kit requests per minute.
const e2eKitLimit = 3000

// pipeline is the one running pipeline of the package and what it talks to.
type pipeline struct {
	cfg     *config.Config
	base    string // http://host:port of the pipeline
	secrets map[string]string
	logPath string
	app     *pgxpool.Pool
	kit     *kitsim.Server
	circle  *circlesim.Server
	mapping *mapping.Mapping
	cmd     *exec.Cmd
	runID   string
}

var (
	shared     *pipeline
	sharedErr  error
	sharedOnce sync.Once
	cleanups   []func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	os.Exit(code)
}

// thePipeline starts the shared pipeline on first use.
func thePipeline(t *testing.T) *pipeline {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: needs the local stack; skipped with -short")
	}
	sharedOnce.Do(func() { shared, sharedErr = start(t) })
	if sharedErr != nil {
		t.Fatalf("pipeline: %v", sharedErr)
	}
	return shared
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer l.Close()
	return l.Addr().String()
}

func start(t *testing.T) (*pipeline, error) {
	// The shared pipeline outlives the first test: its resources are
	// released in TestMain, not by t.Cleanup.
	cfg := testenv.Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m, err := mapping.Example()
	if err != nil {
		return nil, err
	}
	p := &pipeline{cfg: cfg, mapping: m, runID: "e" + testenv.ID()}
	p.secrets = map[string]string{
		"LR_STRIPE_WEBHOOK_SECRET": "whsec_e2e" + testenv.ID() + testenv.ID(),
		"LR_KIT_WEBHOOK_SECRET":    "kitsecret-e2e-" + testenv.ID() + testenv.ID(),
		"LR_CIRCLE_PUSH_SECRET":    "circlepush-e2e-" + testenv.ID() + testenv.ID(),
		"LR_CIRCLE_API_TOKEN":      "circle-token-e2e-" + testenv.ID(),
		"LR_KIT_API_KEY":           "kit-key-e2e-" + testenv.ID(),
		"LR_OPS_TOKEN":             "ops-token-e2e-" + testenv.ID(),
	}
	httpAddr := freeAddr()
	p.base = "http://" + httpAddr

	groups, tags, fields := circlesim.Seed(m)
	p.circle = circlesim.New(circlesim.Options{Token: p.secrets["LR_CIRCLE_API_TOKEN"], AccessGroups: groups, MemberTags: tags, ProfileFields: fields})
	circleURL, err := p.circle.Start("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { p.circle.Close() })
	kitTags, kitFields := kitsim.Seed(m)
	// Kit's real 120 requests a minute is proven in the sinks' own tests;
	// here it would make every scenario wait for the ones before it.
	p.kit = kitsim.New(kitsim.Options{APIKey: p.secrets["LR_KIT_API_KEY"], Tags: kitTags, Fields: kitFields, Limit: e2eKitLimit,
		WebhookURL: p.base + "/webhooks/kit", WebhookSecret: p.secrets["LR_KIT_WEBHOOK_SECRET"],
		WebhookRetries: []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}})
	kitURL, err := p.kit.Start("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { p.kit.Close() })

	// An app database of the run's own: the CDC snapshot then holds only
	// this run's users, whatever earlier runs left in the stack's.
	appName := "lr_e2e_app_" + testenv.ID()
	appURL, err := pg.CreateDatabase(ctx, cfg.PostgresURL, appName)
	if err != nil {
		return nil, err
	}
	serverURL := cfg.PostgresURL
	cleanups = append(cleanups, func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		_, _ = pg.DropDatabases(dctx, serverURL, appName, "")
	})
	cfg.PostgresURL = appURL
	p.app, err = pg.Connect(ctx, cfg.PostgresURL, "app database")
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, p.app.Close)
	if err := traffic.EnsureAppSchema(ctx, p.app); err != nil {
		return nil, err
	}

	bin := filepath.Join(os.TempDir(), "launchready-e2e-"+testenv.ID())
	build := exec.Command("go", "build", "-o", bin, "./cmd/launchready")
	build.Dir = testenv.Root()
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build: %v\n%s", err, out)
	}
	cleanups = append(cleanups, func() { os.Remove(bin) })

	slot := "lr_e2e_" + testenv.ID()
	env := append(os.Environ(),
		"LR_KAFKA_BROKERS="+strings.Join(cfg.KafkaBrokers, ","),
		"LR_TOPIC_PREFIX="+cfg.TopicPrefix,
		"LR_KAFKA_PARTITIONS=3",
		"LR_POSTGRES_URL="+cfg.PostgresURL,
		"LR_STATE_POSTGRES_URL="+cfg.StatePostgresURL,
		"LR_CLICKHOUSE_ADDR="+cfg.ClickHouseAddr,
		"LR_CLICKHOUSE_DATABASE="+cfg.ClickHouseDatabase,
		"LR_HTTP_ADDR="+httpAddr,
		"LR_CIRCLE_BASE_URL="+strings.TrimRight(circleURL, "/")+circlesim.Base,
		"LR_KIT_BASE_URL="+strings.TrimRight(kitURL, "/")+"/v4",
		"LR_CIRCLE_POLL_INTERVAL=1s",
		fmt.Sprintf("LR_KIT_RATE_LIMIT=%d", e2eKitLimit),
		// The simulator has no monthly quota; the default (5,000) would
		// stretch the poll interval to minutes.
		"LR_CIRCLE_MONTHLY_QUOTA=100000000",
		"LR_CDC_SLOT="+slot,
		"LR_CDC_PUBLICATION="+slot,
		"LR_CDC_TABLES=public.users,public.chat_sessions",
		"LR_CORS_ORIGINS=https://app.example.com",
		"LR_LOG_LEVEL=debug",
	)
	for k, v := range p.secrets {
		env = append(env, k+"="+v)
	}
	p.logPath = filepath.Join(os.TempDir(), "launchready-e2e-"+slot+".log")
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, "run")
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
		}
		logf.Close()
		dropSlot(cfg, slot)
		testenv.DropTopicsAndDB(cfg)
		if os.Getenv("LR_TEST_KEEP") == "" {
			os.Remove(p.logPath)
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(p.base + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p, nil
			}
		}
		if p.cmd.ProcessState != nil || time.Now().After(deadline) {
			return nil, fmt.Errorf("pipeline not ready within 90s; log:\n%s", tail(p.logPath, 40))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func dropSlot(cfg *config.Config, slot string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	app, err := pg.Connect(ctx, cfg.PostgresURL, "app database")
	if err != nil {
		return
	}
	defer app.Close()
	_, _ = app.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", slot)
	_, _ = app.Exec(ctx, "DROP PUBLICATION IF EXISTS "+slot)
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// population makes n customers of the given lives (cycled), unique to the test.
func (p *pipeline) population(t *testing.T, n int, lives ...traffic.Life) []*traffic.Customer {
	t.Helper()
	prices := map[string]string{}
	for _, pl := range p.mapping.Plans {
		prices[pl.Name] = pl.Prices[0]
	}
	return traffic.Generate(traffic.Population{N: n, Seed: uint64(time.Now().UnixNano()), RunID: "t" + testenv.ID(), Now: time.Now(), Prices: prices, Lives: lives})
}

// drive plays customers with the given duplicate rate, out of order.
func (p *pipeline) drive(t *testing.T, cs []*traffic.Customer, dup float64) *traffic.Report {
	t.Helper()
	var lead []int64
	for _, r := range p.mapping.Kit.LeadTags {
		lead = append(lead, r.ID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := traffic.Drive(ctx, traffic.Options{WebhookBase: p.base, StripeSecret: p.secrets["LR_STRIPE_WEBHOOK_SECRET"],
		App: p.app, Kit: p.kit, Circle: p.circle, LeadTags: lead, Duplicates: dup, OutOfOrder: true, Concurrency: 8}, cs)
	if err != nil {
		t.Fatalf("traffic: %v", err)
	}
	return rep
}

// converge waits until every customer matches the truth.
func (p *pipeline) converge(t *testing.T, cs []*traffic.Customer, limit time.Duration) *traffic.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit+30*time.Second)
	defer cancel()
	o, err := traffic.WaitConverged(ctx, p.cfg, cs, limit, nil)
	if err != nil {
		t.Fatalf("reading state: %v", err)
	}
	if !o.OK() {
		t.Fatalf("not converged after %s: %d/%d match, %d duplicate records:\n%s\npipeline log tail:\n%s",
			limit, o.Matched, o.Customers, o.DuplicateRecords, strings.Join(o.Wrong, "\n"), tail(p.logPath, 30))
	}
	return o
}

// eventually polls cond until it holds or limit passes.
func eventually(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < limit {
		ok, detail := cond()
		if ok {
			return time.Since(start)
		}
		last = detail
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s (%s)", what, limit, last)
	return 0
}

// clickhouse opens the audit database of the pipeline.
func (p *pipeline) clickhouse(t *testing.T) driver.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := chdb.Open(ctx, p.cfg, p.cfg.ClickHouseDatabase)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func kitFaults(errRate float64) kitsim.Faults { return kitsim.Faults{Errors: errRate} }
