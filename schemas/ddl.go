package schemas

import "embed"

// DDL holds the versioned migrations: clickhouse/NNN_*.sql (valid on
// ClickHouse 18.16 and current releases) and postgres/NNN_*.sql (launchready's
// own state database). `launchready migrate` applies them.
//
//go:embed clickhouse/*.sql postgres/*.sql
var DDL embed.FS
