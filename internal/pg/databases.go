package pg

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
)

// validName is what CreateDatabase and DropDatabase accept: names that need
// no quoting.
var validName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// WithDatabase returns the postgres URL u naming database name instead.
func WithDatabase(u, name string) (string, error) {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "postgres" && p.Scheme != "postgresql") {
		return "", fmt.Errorf("not a postgres:// URL")
	}
	p.Path = "/" + name
	return p.String(), nil
}

// CreateDatabase creates database name on the server u points at (connecting
// to u's own database to do it) and returns the URL of the new database.
func CreateDatabase(ctx context.Context, u, name string) (string, error) {
	if !validName.MatchString(name) {
		return "", fmt.Errorf("database name %q: use lower-case letters, digits and _", name)
	}
	conn, err := connectOne(ctx, u)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return WithDatabase(u, name)
}

// DropDatabases drops every database whose name starts with prefix, except
// keep, on the server u points at; first the replication slots in them
// (ending the sessions that hold them) and their connections. It returns the
// names dropped.
func DropDatabases(ctx context.Context, u, prefix, keep string) ([]string, error) {
	if !validName.MatchString(prefix) {
		return nil, fmt.Errorf("database prefix %q: use lower-case letters, digits and _", prefix)
	}
	conn, err := connectOne(ctx, u)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE starts_with(datname, $1) AND datname <> $2 ORDER BY datname", prefix, keep)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	var dropped []string
	for _, name := range names {
		if !validName.MatchString(name) {
			continue
		}
		if err := dropSlots(ctx, conn, name); err != nil {
			return dropped, err
		}
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return dropped, fmt.Errorf("drop database %s: %w", name, err)
		}
		dropped = append(dropped, name)
	}
	return dropped, nil
}

// dropSlots drops the replication slots of database name, ending the
// sessions that hold them (a slot stays active a moment after its session
// was told to end).
func dropSlots(ctx context.Context, conn *pgx.Conn, name string) error {
	for attempt := 0; ; attempt++ {
		if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", name); err != nil {
			return fmt.Errorf("drop the replication slots of %s: %w", name, err)
		}
		var left int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE database = $1", name).Scan(&left); err != nil {
			return fmt.Errorf("count the replication slots of %s: %w", name, err)
		}
		if left == 0 {
			return nil
		}
		if attempt == 50 {
			return fmt.Errorf("drop the replication slots of %s: %d still in use", name, left)
		}
		if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL", name); err != nil {
			return fmt.Errorf("end the replication sessions of %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func connectOne(ctx context.Context, u string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return conn, nil
}
