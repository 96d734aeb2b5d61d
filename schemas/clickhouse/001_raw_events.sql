-- Audit trail, part 1: raw provider events, one row per delivery that ingest
-- wrote to lr.raw.<provider>. A provider's duplicate delivery is a row of its
-- own with duplicate = 1 (the duplicate rate is a product metric).
--
-- Why ReplacingMergeTree on the record identity: the audit writer commits its
-- Kafka offsets only after the insert returned, so a crash between the two
-- re-delivers the batch and the same rows are inserted again. record_id is
-- the content identity of the delivery (provider:event_id@received_at in
-- nanoseconds), and every column of the sorting key is derived from the
-- record alone, so a re-inserted row has the same key and the engine
-- collapses it when it merges parts. Merges happen in the background, so
-- queries never trust that: they count uniqExact(record_id) or read LIMIT 1 BY
-- record_id. The engine keeps storage from growing; the queries keep the
-- answers exact before the merge.
--
-- Partitioned by month (event_date comes from received_at, so a re-delivered
-- row lands in the same partition as its twin), ordered by customer_key first
-- for the per-customer timeline. customer_key is the provider object the event
-- is about (RawEvent.object_id, else the body's customer id, else its first
-- email); the other keys the body names are in audit_keys.
-- Times are DateTime (seconds, for partitioning and people) plus *_ms columns
-- (milliseconds since the epoch, for ordering): 18.16 has no DateTime64.
CREATE TABLE IF NOT EXISTS raw_events (
    event_date        Date,
    at                DateTime,
    at_ms             Int64,
    customer_key      String,
    record_id         String,
    provider          String,
    event_id          String,
    type              String,
    object_id         String,
    provider_customer String,
    emails            Array(String),
    provider_time     DateTime,
    provider_ms       Int64,
    source            String,
    verification      String,
    duplicate         UInt8,
    first_seen_ms     Int64,
    request_id        String,
    payload           String,
    payload_error     String,
    topic             String,
    kafka_partition   Int32,
    kafka_offset      Int64,
    kafka_ms          Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date)
ORDER BY (customer_key, at_ms, record_id);

-- Every further key a record names (emails, provider customer ids, app user
-- ids) besides its customer_key, so a timeline finds an event by any of them
-- with the primary index instead of a scan of the arrays.
CREATE TABLE IF NOT EXISTS audit_keys (
    event_date   Date,
    key          String,
    tbl          String,
    customer_key String,
    at_ms        Int64,
    record_id    String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date)
ORDER BY (key, tbl, customer_key, at_ms, record_id);
