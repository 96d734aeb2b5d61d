package migrate_test

import (
	"context"
	"testing"
	"testing/fstest"
	"time"

	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/migrate"
	"github.com/launchready/launchready/internal/pg"
	"github.com/launchready/launchready/internal/testenv"
	"github.com/launchready/launchready/schemas"
)

func TestSplit(t *testing.T) {
	t.Parallel()
	got := migrate.Split("-- comment\nCREATE TABLE a (x int);\n\nCREATE TABLE b (\n  y int\n);\n-- tail\n")
	if len(got) != 2 || got[0] != "CREATE TABLE a (x int)" {
		t.Fatalf("Split = %q", got)
	}
}

func TestLoadRejectsBadNames(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{"d/init.sql": {Data: []byte("select 1;")}}
	if _, err := migrate.Load(fsys, "d"); err == nil {
		t.Fatal("a migration without a version number was accepted")
	}
	fsys = fstest.MapFS{"d/001_a.sql": {Data: []byte("select 1;")}, "d/001_b.sql": {Data: []byte("select 2;")}}
	if _, err := migrate.Load(fsys, "d"); err == nil {
		t.Fatal("two migrations with one version were accepted")
	}
}

// Migrating twice leaves the same topics (compaction on the keyed ones, as the
// broker reports it), the same Postgres tables and the same ClickHouse tables.
func TestMigrateTwiceIsIdempotent(t *testing.T) {
	t.Parallel()
	cfg := testenv.Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pool, err := pg.Connect(ctx, cfg.StatePostgresURL, "state database")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	t.Cleanup(func() { testenv.DropTopicsAndDB(cfg) })
	log := testenv.Logger(t)
	if err := migrate.All(ctx, log, cfg, pool); err != nil {
		t.Fatalf("first migrate: %v", err)
	}
	if err := migrate.All(ctx, log, cfg, pool); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if n, err := migrate.ClickHouse(ctx, cfg); err != nil || n != 0 {
		t.Fatalf("a third ClickHouse migrate applied %d (err %v), want 0", n, err)
	}
	if n, err := migrate.Postgres(ctx, pool); err != nil || n != 0 {
		t.Fatalf("a third Postgres migrate applied %d (err %v), want 0", n, err)
	}

	cl := kafka.NewClient(cfg.KafkaBrokers)
	for _, tp := range schemas.Topics {
		name := cfg.Topic(tp.Name)
		n, err := cl.Partitions(ctx, name)
		if err != nil || n != cfg.KafkaPartitions {
			t.Errorf("%s: %d partitions (err %v), want %d", name, n, err, cfg.KafkaPartitions)
		}
		conf, err := cl.TopicConfigs(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		want := "delete"
		if tp.Compact {
			want = "compact"
		}
		if conf["cleanup.policy"] != want {
			t.Errorf("%s: cleanup.policy=%q, want %q", name, conf["cleanup.policy"], want)
		}
	}

	var applied int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM lr_schema_migrations").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	ms, _ := migrate.Load(schemas.DDL, "postgres")
	if applied != len(ms) {
		t.Errorf("postgres: %d migrations recorded, %d exist", applied, len(ms))
	}
	ch, err := chdb.Open(ctx, cfg, cfg.ClickHouseDatabase)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	var recorded uint64
	if err := ch.QueryRow(ctx, "SELECT count() FROM schema_migrations").Scan(&recorded); err != nil {
		t.Fatal(err)
	}
	chms, _ := migrate.Load(schemas.DDL, "clickhouse")
	if int(recorded) != len(chms) {
		t.Errorf("clickhouse: %d migrations recorded, %d exist", recorded, len(chms))
	}
}
