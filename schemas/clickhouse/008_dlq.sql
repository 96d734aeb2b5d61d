-- Audit trail, part 8: records a stage could not handle (lr.dlq), and records
-- the audit writer itself could not decode (stage = audit): nothing read is
-- dropped silently. record is the redacted record. Identity is a hash of the
-- Kafka value (for the writer's own, the Kafka position); see 001 for why a
-- ReplacingMergeTree. customer_key is the record's customer when it names one.
CREATE TABLE IF NOT EXISTS dlq (
    event_date      Date,
    at              DateTime,
    at_ms           Int64,
    customer_key    String,
    record_id       String,
    stage           String,
    source_topic    String,
    record_key      String,
    reason          String,
    record          String,
    topic           String,
    kafka_partition Int32,
    kafka_offset    Int64,
    kafka_ms        Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date)
ORDER BY (customer_key, at_ms, record_id);
