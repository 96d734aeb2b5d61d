-- Audit trail, part 7: what the sinks did (or would do) in Circle and Kit
-- (lr.sink.results), one row per attempt outcome. Identity is action_id,
-- status, attempts and time; see 001 for why a ReplacingMergeTree.
CREATE TABLE IF NOT EXISTS sink_actions (
    event_date          Date,
    at                  DateTime,
    at_ms               Int64,
    customer_id         String,
    action_id           String,
    record_id           String,
    email               String,
    provider            String,
    action              String,
    target              String,
    status              String,
    http_status         Int32,
    error               String,
    attempts            Int32,
    duration_ms         Float64,
    entitlement_version Int64,
    topic               String,
    kafka_partition     Int32,
    kafka_offset        Int64,
    kafka_ms            Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date)
ORDER BY (customer_id, action_id, at_ms, record_id);
