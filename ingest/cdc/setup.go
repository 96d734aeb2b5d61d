package cdc

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrSetup marks errors that retrying cannot fix: a setting or the database
// must change first, and the error's one line says how.
var ErrSetup = errors.New("cdc setup")

type setupError struct{ msg string }

func (e *setupError) Error() string        { return e.msg }
func (e *setupError) Is(target error) bool { return target == ErrSetup }

func setupErrorf(format string, a ...any) error {
	return &setupError{msg: fmt.Sprintf(format, a...)}
}

func walLevelError(level string) error {
	if level == "logical" {
		return nil
	}
	return setupErrorf("wal_level is %q but logical replication needs \"logical\": run ALTER SYSTEM SET wal_level = logical; and restart Postgres", level)
}

func privilegeError(user string, canReplicate bool) error {
	if canReplicate {
		return nil
	}
	return setupErrorf("database user %q lacks the REPLICATION privilege: run ALTER ROLE %s WITH REPLICATION; as a superuser", user, quoteIdent(user))
}

func slotBusyError(slot string, pid int32) error {
	return setupErrorf("replication slot %q is in use by process %d (another launchready cdc?): stop that process, or end it with SELECT pg_terminate_backend(%d);", slot, pid, pid)
}

func publicationMissingError(pub string, missing []string) error {
	q := make([]string, len(missing))
	for i, t := range missing {
		q[i] = quoteTable(t)
	}
	return setupErrorf("publication %q lacks %s listed in LR_CDC_TABLES: run ALTER PUBLICATION %s ADD TABLE %s; then request a snapshot of it (POST /cdc/snapshot?table=%s)",
		pub, strings.Join(missing, ", "), quoteIdent(pub), strings.Join(q, ", "), missing[0])
}

func lostSlotError(slot string) error {
	return setupErrorf("replication slot %q is gone although tables were snapshotted through it: the changes since it vanished cannot be read from the WAL; restart with --resnapshot to create it again and snapshot every table anew", slot)
}

var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// splitTable turns "schema.table" (or "table", in public) into its parts.
func splitTable(s string) (schema, table string, err error) {
	s = strings.TrimSpace(s)
	schema, table, ok := strings.Cut(s, ".")
	if !ok {
		schema, table = "public", s
	}
	if schema == "" || table == "" || strings.Contains(table, ".") {
		return "", "", fmt.Errorf("%q is not schema.table", s)
	}
	return schema, table, nil
}

// quoteTable quotes "schema.table".
func quoteTable(s string) string {
	schema, table, err := splitTable(s)
	if err != nil {
		return s
	}
	return qualified(schema, table)
}

// slotInfo is what pg_replication_slots says about our slot.
type slotInfo struct {
	Exists    bool
	Plugin    string
	Database  string
	Active    bool
	PID       int32
	Confirmed LSN
	WALStatus string
}

func readSlot(ctx context.Context, pool *pgxpool.Pool, slot string) (slotInfo, error) {
	var si slotInfo
	var plugin, db, walStatus, confirmed *string
	var pid *int32
	err := pool.QueryRow(ctx, `SELECT plugin, database, active, active_pid, confirmed_flush_lsn::text, wal_status
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&plugin, &db, &si.Active, &pid, &confirmed, &walStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return slotInfo{}, nil
	}
	if err != nil {
		return slotInfo{}, fmt.Errorf("read replication slot %q: %w", slot, err)
	}
	si.Exists = true
	si.Plugin, si.Database, si.WALStatus = deref(plugin), deref(db), deref(walStatus)
	if pid != nil {
		si.PID = *pid
	}
	if confirmed != nil {
		if si.Confirmed, err = ParseLSN(*confirmed); err != nil {
			return slotInfo{}, err
		}
	}
	return si, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// checkServer verifies wal_level and the user's privilege.
func checkServer(ctx context.Context, pool *pgxpool.Pool) error {
	var level string
	if err := pool.QueryRow(ctx, `SHOW wal_level`).Scan(&level); err != nil {
		return fmt.Errorf("app database: %w", err)
	}
	if err := walLevelError(level); err != nil {
		return err
	}
	var user string
	var can bool
	if err := pool.QueryRow(ctx, `SELECT current_user::text, rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user`).Scan(&user, &can); err != nil {
		return fmt.Errorf("app database: %w", err)
	}
	return privilegeError(user, can)
}

// ensurePublication creates the publication when missing (with the
// configured tables, or all tables) and otherwise checks that it includes
// every configured table. It returns the published tables as schema.table.
func ensurePublication(ctx context.Context, pool *pgxpool.Pool, pub string, tables []string) ([]string, error) {
	for _, t := range tables {
		var oid *uint32
		if err := pool.QueryRow(ctx, `SELECT to_regclass($1)::oid`, quoteTable(t)).Scan(&oid); err != nil {
			return nil, fmt.Errorf("look up table %s: %w", t, err)
		}
		if oid == nil {
			return nil, setupErrorf("table %s listed in LR_CDC_TABLES does not exist in the app database: create it or remove it from LR_CDC_TABLES", t)
		}
	}
	var all bool
	err := pool.QueryRow(ctx, `SELECT puballtables FROM pg_publication WHERE pubname = $1`, pub).Scan(&all)
	if errors.Is(err, pgx.ErrNoRows) {
		target := "ALL TABLES"
		if len(tables) > 0 {
			q := make([]string, len(tables))
			for i, t := range tables {
				q[i] = quoteTable(t)
			}
			target = "TABLE " + strings.Join(q, ", ")
		}
		// Truncates are left out: a TRUNCATE has no per-key form.
		_, err = pool.Exec(ctx, "CREATE PUBLICATION "+quoteIdent(pub)+" FOR "+target+" WITH (publish = 'insert, update, delete')")
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" { // created meanwhile by another process
			err = nil
		}
		if errors.As(err, &pgErr) && pgErr.Code == "42501" {
			return nil, setupErrorf("cannot create publication %q: %s; create it as a superuser (CREATE PUBLICATION %s FOR %s) or grant the user CREATE on the database", pub, pgErr.Message, quoteIdent(pub), target)
		}
		if err != nil {
			return nil, fmt.Errorf("create publication %q: %w", pub, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read publication %q: %w", pub, err)
	}
	published, err := publishedTables(ctx, pool, pub)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, t := range tables {
		if !slices.Contains(published, t) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return nil, publicationMissingError(pub, missing)
	}
	return published, nil
}

func publishedTables(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, pub string) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT schemaname::text || '.' || tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`, pub)
	if err != nil {
		return nil, fmt.Errorf("list tables of publication %q: %w", pub, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list tables of publication %q: %w", pub, err)
	}
	return out, nil
}

// waitSlotIdle waits up to wait for another process to release the slot (a
// killed predecessor's walsender lingers a moment), then gives up with the
// one-line explanation.
func waitSlotIdle(ctx context.Context, pool *pgxpool.Pool, slot string, wait time.Duration) (slotInfo, error) {
	deadline := time.Now().Add(wait)
	for {
		si, err := readSlot(ctx, pool, slot)
		if err != nil || !si.Exists || !si.Active {
			return si, err
		}
		if time.Now().After(deadline) {
			return si, slotBusyError(slot, si.PID)
		}
		select {
		case <-ctx.Done():
			return si, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkSlot refuses a slot this stage cannot use.
func checkSlot(si slotInfo, slot, database string) error {
	if !si.Exists {
		return nil
	}
	if si.Plugin != "pgoutput" || si.Database != database {
		return setupErrorf("replication slot %q uses plugin %q on database %q, not pgoutput on %q: choose another LR_CDC_SLOT or drop it with SELECT pg_drop_replication_slot('%s');", slot, si.Plugin, si.Database, database, slot)
	}
	if si.WALStatus == "lost" {
		return setupErrorf("replication slot %q has lost WAL it still needed (wal_status=lost, max_slot_wal_keep_size exceeded): drop it with SELECT pg_drop_replication_slot('%s'); and restart with --resnapshot", slot, slot)
	}
	return nil
}
