package migrate

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// Postgres applies the postgres/ migrations not yet recorded in
// lr_schema_migrations, each in its own transaction. Returns how many ran.
func Postgres(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	ms, err := Load(schemas.DDL, "postgres")
	if err != nil {
		return 0, err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS lr_schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return 0, fmt.Errorf("postgres: create lr_schema_migrations: %w", err)
	}
	applied := 0
	for _, m := range ms {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return applied, err
		}
		// The advisory lock keeps two concurrent migrate runs from racing.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(727172)`); err != nil {
			tx.Rollback(ctx)
			return applied, err
		}
		var done bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM lr_schema_migrations WHERE version = $1)`, m.Version).Scan(&done); err != nil {
			tx.Rollback(ctx)
			return applied, err
		}
		if done {
			tx.Rollback(ctx)
			continue
		}
		for _, st := range m.Statements {
			if _, err := tx.Exec(ctx, st); err != nil {
				tx.Rollback(ctx)
				return applied, fmt.Errorf("postgres migration %s: %w", m.Name, err)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO lr_schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			tx.Rollback(ctx)
			return applied, err
		}
		if err := tx.Commit(ctx); err != nil {
			return applied, err
		}
		applied++
	}
	return applied, nil
}

// ClickHouse creates the database if missing and applies the clickhouse/
// migrations not yet recorded in its schema_migrations table. Statements use
// IF NOT EXISTS, so a migration interrupted half-way is safe to run again.
func ClickHouse(ctx context.Context, cfg *config.Config) (int, error) {
	ms, err := Load(schemas.DDL, "clickhouse")
	if err != nil {
		return 0, err
	}
	db := cfg.ClickHouseDatabase
	boot, err := chdb.Open(ctx, cfg, "")
	if err != nil {
		return 0, err
	}
	err = boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db)
	boot.Close()
	if err != nil {
		return 0, fmt.Errorf("clickhouse: create database %s: %w", db, err)
	}
	// The migrations name their tables unqualified: run them on db.
	conn, err := chdb.Open(ctx, cfg, db)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+db+`.schema_migrations (
		version UInt32, name String, applied_at DateTime) ENGINE = TinyLog`); err != nil {
		return 0, fmt.Errorf("clickhouse: create schema_migrations: %w", err)
	}
	done := map[int]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM "+db+".schema_migrations")
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return 0, err
		}
		done[int(v)] = true
	}
	rows.Close()
	applied := 0
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		for _, st := range m.Statements {
			if err := conn.Exec(ctx, st); err != nil {
				return applied, fmt.Errorf("clickhouse migration %s: %w", m.Name, err)
			}
		}
		// Inserts go through the native batch API: ClickHouse 18.16 does not
		// answer an INSERT … VALUES sent as a plain query over this driver.
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".schema_migrations (version, name, applied_at)")
		if err != nil {
			return applied, err
		}
		if err := b.Append(uint32(m.Version), m.Name, time.Now()); err != nil {
			return applied, err
		}
		if err := b.Send(); err != nil {
			return applied, fmt.Errorf("clickhouse: record migration %s: %w", m.Name, err)
		}
		applied++
	}
	return applied, nil
}

// TopicSpecs turns the topic list into specs under the configured prefix.
func TopicSpecs(cfg *config.Config) []kafka.TopicSpec {
	specs := make([]kafka.TopicSpec, 0, len(schemas.Topics))
	for _, t := range schemas.Topics {
		specs = append(specs, TopicSpec(cfg, t))
	}
	return specs
}

// TopicSpec is the spec of one topic under cfg.
func TopicSpec(cfg *config.Config, t schemas.Topic) kafka.TopicSpec {
	conf := map[string]string{}
	if t.Compact {
		conf["cleanup.policy"] = "compact"
		conf["min.compaction.lag.ms"] = "0"
		conf["segment.ms"] = strconv.FormatInt((6 * time.Hour).Milliseconds(), 10)
	} else {
		conf["cleanup.policy"] = "delete"
		if t.Retention > 0 {
			conf["retention.ms"] = strconv.FormatInt(t.Retention.Milliseconds(), 10)
		}
	}
	return kafka.TopicSpec{Name: cfg.Topic(t.Name), Partitions: cfg.KafkaPartitions, Replicas: cfg.KafkaReplicas, Configs: conf}
}

// All runs the Kafka, Postgres and ClickHouse migrations.
func All(ctx context.Context, log *slog.Logger, cfg *config.Config, pool *pgxpool.Pool) error {
	if err := kafka.NewClient(cfg.KafkaBrokers).EnsureTopics(ctx, TopicSpecs(cfg)); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	log.InfoContext(ctx, "kafka topics ready", "topics", len(schemas.Topics), "prefix", cfg.TopicPrefix)
	n, err := Postgres(ctx, pool)
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "postgres migrations", "applied", n)
	n, err = ClickHouse(ctx, cfg)
	if err != nil {
		return err
	}
	log.InfoContext(ctx, "clickhouse migrations", "applied", n, "database", cfg.ClickHouseDatabase)
	return nil
}
