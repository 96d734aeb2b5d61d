// Package testenv gives integration tests the real local stack: the settings
// scripts/stack.sh wrote to .stack/env, a unique topic prefix and ClickHouse
// database per test, and the migrations applied. Tests that need it fail (not
// skip) when a service is down, unless run with -short.
package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/migrate"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/pg"
)

// Root returns the project root (the folder holding go.mod).
func Root() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

var loadEnv sync.Once

// stackEnv reads .stack/env (export KEY=VALUE lines) into a map.
func stackEnv() map[string]string {
	out := map[string]string{}
	dir := os.Getenv("LR_STACK_DIR")
	if dir == "" {
		dir = filepath.Join(Root(), ".stack")
	}
	f, err := os.Open(filepath.Join(dir, "env"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "))
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out
}

// ID returns a short random id for unique names.
func ID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Config returns settings for the local stack with a topic prefix unique to
// this test (lr.t<id>.), a ClickHouse database of its own, and the service
// settings from the environment or .stack/env. It checks each service answers.
func Config(t testing.TB) *config.Config {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the local stack (make stack-up); skipped with -short")
	}
	file := stackEnv()
	lookup := func(k string) (string, bool) {
		if v, ok := os.LookupEnv(k); ok {
			return v, true
		}
		v, ok := file[k]
		return v, ok
	}
	cfg, err := config.LoadFrom(lookup, nil, nil)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	id := ID()
	cfg.TopicPrefix = "lr.t" + id + "."
	cfg.ClickHouseDatabase = "lr_t" + id
	cfg.KafkaPartitions = 3
	for name, addr := range map[string]string{"kafka": cfg.KafkaBrokers[0], "clickhouse": cfg.ClickHouseAddr, "postgres": pgHostPort(cfg.PostgresURL)} {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatalf("testenv: %s at %s does not answer: run `make stack-up` (or `make test`, which starts it)", name, addr)
		}
		c.Close()
	}
	return cfg
}

func pgHostPort(url string) string {
	rest := url[strings.Index(url, "@")+1:]
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// Migrated returns Config(t) after creating its topics, applying the Postgres
// and ClickHouse migrations, and registering clean-up of its topics and
// ClickHouse database. It also returns a pool on the state database.
func Migrated(t testing.TB) (*config.Config, *pgxpool.Pool) {
	t.Helper()
	cfg := Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := pg.Connect(ctx, cfg.StatePostgresURL, "state database")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := kafka.NewClient(cfg.KafkaBrokers).EnsureTopics(ctx, migrate.TopicSpecs(cfg)); err != nil {
		t.Fatalf("testenv: topics: %v", err)
	}
	if _, err := migrate.Postgres(ctx, pool); err != nil {
		t.Fatalf("testenv: postgres: %v", err)
	}
	if _, err := migrate.ClickHouse(ctx, cfg); err != nil {
		t.Fatalf("testenv: clickhouse: %v", err)
	}
	t.Cleanup(func() { DropTopicsAndDB(cfg) })
	return cfg, pool
}

// DropTopicsAndDB deletes the test's topics and ClickHouse database.
// Set LR_TEST_KEEP=1 to keep them for a look after a failure.
func DropTopicsAndDB(cfg *config.Config) {
	if os.Getenv("LR_TEST_KEEP") != "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var names []string
	for _, s := range migrate.TopicSpecs(cfg) {
		names = append(names, s.Name)
	}
	_ = kafka.NewClient(cfg.KafkaBrokers).DeleteTopics(ctx, names...)
	dropClickHouse(ctx, cfg)
}

// Logger returns a logger that writes through t.Log, redacted like production.
func Logger(t testing.TB) *slog.Logger { return obs.NewLogger(tWriter{t}, "debug") }

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
