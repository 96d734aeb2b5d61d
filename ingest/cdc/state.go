package cdc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// snapshotState is the stage's bookkeeping of snapshots in the state
// database (lr_cdc_snapshots). The stream position is not here: the slot's
// confirmed_flush_lsn is the one source of truth for it.
type snapshotState struct {
	pool *pgxpool.Pool
	slot string
}

// load returns the tables whose snapshot is done and those still owed.
func (s *snapshotState) load(ctx context.Context) (done, pending []string, err error) {
	rows, err := s.pool.Query(ctx, `SELECT table_name, done_at IS NOT NULL FROM lr_cdc_snapshots WHERE slot = $1 ORDER BY table_name`, s.slot)
	if err != nil {
		return nil, nil, stateError(err)
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		var d bool
		if err := rows.Scan(&t, &d); err != nil {
			return nil, nil, stateError(err)
		}
		if d {
			done = append(done, t)
		} else {
			pending = append(pending, t)
		}
	}
	return done, pending, stateError(rows.Err())
}

// request records that tables need a snapshot (again).
func (s *snapshotState) request(ctx context.Context, tables []string) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO lr_cdc_snapshots (slot, table_name) SELECT $1, unnest($2::text[])
		ON CONFLICT (slot, table_name) DO UPDATE SET requested_at = now(), done_at = NULL, snapshot_lsn = NULL, row_count = NULL`, s.slot, tables)
	return stateError(err)
}

// pendingSince returns the owed tables and the database's current time: a
// snapshot taken now completes the requests made up to that time.
func (s *snapshotState) pendingSince(ctx context.Context) ([]string, time.Time, error) {
	var now time.Time
	if err := s.pool.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		return nil, time.Time{}, stateError(err)
	}
	_, pending, err := s.load(ctx)
	return pending, now, err
}

// markDone records finished snapshots; a request made after since stays owed.
func (s *snapshotState) markDone(ctx context.Context, tables []string, lsn LSN, rows map[string]int64, since time.Time) error {
	batch := &pgx.Batch{}
	for _, t := range tables {
		batch.Queue(`UPDATE lr_cdc_snapshots SET done_at = now(), snapshot_lsn = $3, row_count = $4
			WHERE slot = $1 AND table_name = $2 AND requested_at <= $5`, s.slot, t, lsn.String(), rows[t], since)
	}
	return stateError(s.pool.SendBatch(ctx, batch).Close())
}

// reset forgets every snapshot of the slot (it is being created anew).
func (s *snapshotState) reset(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM lr_cdc_snapshots WHERE slot = $1`, s.slot)
	return stateError(err)
}

func stateError(err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return setupErrorf("the state database has no lr_cdc_snapshots table: run `launchready migrate` first")
	}
	return fmt.Errorf("state database: %w", err)
}
