-- Audit trail: raw provider events, one row per record (duplicates flagged).
-- ReplacingMergeTree on the record identity: a batch re-delivered after a crash
-- collapses to one row; queries use FINAL or aggregate on the identity.
CREATE TABLE IF NOT EXISTS raw_events (
    event_date    Date DEFAULT toDate(received_at),
    provider      String,
    event_id      String,
    record_id     String,
    type          String,
    object_id     String,
    customer_key  String,
    email         String,
    provider_time DateTime,
    received_at   DateTime,
    source        String,
    verification  String,
    duplicate     UInt8,
    request_id    String,
    payload       String,
    topic         String,
    kafka_partition Int32,
    kafka_offset  Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date)
ORDER BY (provider, record_id);
