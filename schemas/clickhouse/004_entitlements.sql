-- Audit trail, part 4: every entitlement state the reconciler published to
-- lr.entitlements (the topic is compacted; this table keeps the history).
-- Identity is customer_id@v<version>; see 001 for why a ReplacingMergeTree.
-- latency_ms is ingest-to-entitlement: the record's Kafka timestamp (else
-- updated_at) minus ingested_at, 0 when ingested_at is unknown.
CREATE TABLE IF NOT EXISTS entitlements (
    event_date         Date,
    at                 DateTime,
    at_ms              Int64,
    customer_id        String,
    version            Int64,
    record_id          String,
    email              String,
    user_id            String,
    plan               String,
    status             String,
    access             UInt8,
    period_end_ms      Int64,
    grace_until_ms     Int64,
    flagged            UInt8,
    flag_reason        String,
    source_event_ids   Array(String),
    last_event_ms      Int64,
    ingested_ms        Int64,
    latency_ms         Int64,
    circle_member_ids  Array(String),
    kit_subscriber_ids Array(String),
    deleted            UInt8,
    topic              String,
    kafka_partition    Int32,
    kafka_offset       Int64,
    kafka_ms           Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date)
ORDER BY (customer_id, version);
