package testenv

import (
	"context"

	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/config"
)

func dropClickHouse(ctx context.Context, cfg *config.Config) {
	conn, err := chdb.Open(ctx, cfg, "")
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+cfg.ClickHouseDatabase)
}
