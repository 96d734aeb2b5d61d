// Package chdb connects to ClickHouse over the native protocol. Debian's
// ClickHouse 18.16 answers clickhouse-go v2 only there (its HTTP interface
// predates what the driver speaks), and current releases accept it too.
package chdb

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/launchready/launchready/internal/config"
)

// Open connects to the configured ClickHouse, in database db ("" for default).
// It pings before returning, so a wrong address fails here with a clear error.
func Open(ctx context.Context, cfg *config.Config, db string) (driver.Conn, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Protocol: clickhouse.Native,
		Addr:     []string{cfg.ClickHouseAddr},
		Auth: clickhouse.Auth{
			Database: db,
			Username: cfg.ClickHouseUser,
			Password: cfg.ClickHousePassword.Reveal(),
		},
		DialTimeout:      5 * time.Second,
		ReadTimeout:      60 * time.Second,
		MaxOpenConns:     8,
		MaxIdleConns:     4,
		ConnMaxLifetime:  time.Hour,
		ConnOpenStrategy: clickhouse.ConnOpenInOrder,
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", cfg.ClickHouseAddr, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s (native protocol) does not answer: %w", cfg.ClickHouseAddr, err)
	}
	return conn, nil
}
