package pg_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/launchready/launchready/internal/pg"
	"github.com/launchready/launchready/internal/testenv"
)

func TestWithDatabase(t *testing.T) {
	got, err := pg.WithDatabase("postgres://u:secret@127.0.0.1:54329/app?sslmode=disable", "lr_x")
	if err != nil || got != "postgres://u:secret@127.0.0.1:54329/lr_x?sslmode=disable" {
		t.Fatalf("WithDatabase = %q, %v", got, err)
	}
	if _, err := pg.WithDatabase("mysql://x/y", "z"); err == nil {
		t.Fatal("a mysql URL was accepted")
	}
}

// TestCreateAndDropDatabases: a database made for a run is usable, and
// dropping by prefix removes it with the replication slot a CDC session
// holds open in it, keeping the one named keep.
func TestCreateAndDropDatabases(t *testing.T) {
	cfg := testenv.Config(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := "lr_dbtest_" + testenv.ID() + "_"
	t.Cleanup(func() { _, _ = pg.DropDatabases(context.Background(), cfg.PostgresURL, prefix, "") })
	a, err := pg.CreateDatabase(ctx, cfg.PostgresURL, prefix+"a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pg.CreateDatabase(ctx, cfg.PostgresURL, prefix+"b"); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.CreateDatabase(ctx, cfg.PostgresURL, "Bad-Name"); err == nil {
		t.Fatal("a name that needs quoting was accepted")
	}
	// A replication session holding a slot in a.
	rc, err := pgx.Connect(ctx, a+"&replication=database")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close(context.Background())
	if err := rc.PgConn().Exec(ctx, "CREATE_REPLICATION_SLOT "+prefix+"slot LOGICAL pgoutput").Close(); err != nil {
		t.Fatal(err)
	}
	dropped, err := pg.DropDatabases(ctx, cfg.PostgresURL, prefix, prefix+"b")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dropped, []string{prefix + "a"}) {
		t.Fatalf("dropped %v, want only %sa", dropped, prefix)
	}
	conn, err := pgx.Connect(ctx, cfg.PostgresURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var dbs, slots int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE starts_with(datname, $1)", prefix).Scan(&dbs); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", prefix+"slot").Scan(&slots); err != nil {
		t.Fatal(err)
	}
	if dbs != 1 || slots != 0 {
		t.Fatalf("after the drop: %d databases with the prefix (want 1), %d slots (want 0)", dbs, slots)
	}
}
