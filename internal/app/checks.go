package app

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/obs"
)

// KafkaCheck is ready when a broker answers a metadata request.
func KafkaCheck(brokers []string) obs.Check {
	cl := kafka.NewClient(brokers)
	return func(ctx context.Context) error { return cl.Ping(ctx) }
}

// PostgresCheck is ready when the pool answers a ping.
func PostgresCheck(pool *pgxpool.Pool, what string) obs.Check {
	return func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
}

// ClickHouseCheck is ready when ClickHouse answers a ping.
func ClickHouseCheck(conn driver.Conn) obs.Check {
	return func(ctx context.Context) error {
		if err := conn.Ping(ctx); err != nil {
			return fmt.Errorf("clickhouse: %w", err)
		}
		return nil
	}
}
