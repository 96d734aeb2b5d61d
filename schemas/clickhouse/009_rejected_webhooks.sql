-- Audit trail, part 9: webhook deliveries ingest refused or could not store
-- (lr.ingest.rejections), as counts per provider, reason and HTTP status over
-- short intervals; the deliveries themselves are not kept (unverified bodies).
-- at is the interval's last refusal, first_ms its first. Identity is the
-- record_id ingest gave the count (a count re-sent after an unclear failure
-- keeps it); see 001 for why a ReplacingMergeTree, and why queries still
-- dedupe on it.
CREATE TABLE IF NOT EXISTS rejected_webhooks (
    event_date      Date,
    at              DateTime,
    at_ms           Int64,
    first_ms        Int64,
    record_id       String,
    provider        String,
    reason          String,
    http_status     Int32,
    count           Int64,
    request_ids     Array(String),
    instance        String,
    topic           String,
    kafka_partition Int32,
    kafka_offset    Int64,
    kafka_ms        Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date)
ORDER BY (provider, at_ms, record_id);
