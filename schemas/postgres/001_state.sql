-- launchready's own state in its Postgres database (LR_STATE_POSTGRES_URL).
-- The migration bookkeeping table, lr_schema_migrations, is created by migrate itself.

-- Provider event ids seen by ingest, for duplicate detection that survives
-- restarts. Rows older than the dedup window are deleted by ingest.
CREATE TABLE IF NOT EXISTS lr_seen_events (
    dedup_key     text PRIMARY KEY,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    times_seen    integer NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS lr_seen_events_first_seen_at ON lr_seen_events (first_seen_at);

-- Cursors of pollers (Circle members), advanced only after Kafka acknowledged.
CREATE TABLE IF NOT EXISTS lr_cursors (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
