-- Audit trail, part 5: the reconciler's decisions (the "why") from
-- lr.decisions. decision_id is deterministic (same input, same id), so it is
-- the identity; see 001 for why a ReplacingMergeTree. A decision re-emitted
-- after a restart collapses with its first copy even if its time differs.
CREATE TABLE IF NOT EXISTS decisions (
    event_date        Date,
    at                DateTime,
    at_ms             Int64,
    customer_id       String,
    decision_id       String,
    kind              String,
    rule              String,
    before            String,
    after             String,
    causing_event_ids Array(String),
    flagged           UInt8,
    provider_ms       Int64,
    topic             String,
    kafka_partition   Int32,
    kafka_offset      Int64,
    kafka_ms          Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date)
ORDER BY (customer_id, decision_id);
