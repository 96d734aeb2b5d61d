-- Audit trail, part 3: canonical identities from lr.identity, one row per
-- (identity version, linked key): key_kind is customer (the canonical id
-- itself, always present), email, user, stripe, circle, kit, session or
-- merged_into. Ordered by key so "which customer is this email?" reads the
-- primary index. Identity is customer_id@v<version>; see 001 for why a
-- ReplacingMergeTree on it.
CREATE TABLE IF NOT EXISTS identity_links (
    event_date      Date,
    at              DateTime,
    at_ms           Int64,
    key             String,
    key_kind        String,
    customer_id     String,
    version         Int64,
    record_id       String,
    email           String,
    user_id         String,
    merged_into     String,
    topic           String,
    kafka_partition Int32,
    kafka_offset    Int64,
    kafka_ms        Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date)
ORDER BY (key, customer_id, version, key_kind);
