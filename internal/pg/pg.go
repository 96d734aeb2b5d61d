// Package pg connects to Postgres with pgx and keeps connection errors free of
// passwords.
package pg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Connect opens a pool on url and pings it. what names the database in errors
// ("app database", "state database"); the URL itself is never echoed.
func Connect(ctx context.Context, url, what string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%s: the URL does not parse as a postgres URL", what)
	}
	pc.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s at %s:%d does not answer: %w", what, pc.ConnConfig.Host, pc.ConnConfig.Port, err)
	}
	return pool, nil
}
