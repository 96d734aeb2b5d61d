-- Audit trail, part 6: mismatches opened and closed (lr.mismatches), one row
-- per transition. A mismatch is open when its latest row says so. Identity is
-- mismatch_id, state and time; see 001 for why a ReplacingMergeTree.
CREATE TABLE IF NOT EXISTS mismatches (
    event_date      Date,
    at              DateTime,
    at_ms           Int64,
    customer_id     String,
    mismatch_id     String,
    record_id       String,
    kind            String,
    system          String,
    state           String,
    detail          String,
    topic           String,
    kafka_partition Int32,
    kafka_offset    Int64,
    kafka_ms        Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date)
ORDER BY (customer_id, mismatch_id, at_ms, record_id);
