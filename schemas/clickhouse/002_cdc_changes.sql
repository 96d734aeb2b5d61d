-- Audit trail, part 2: row changes of the app database from lr.cdc.<schema>.<table>.
-- Identity is Change.DedupKey (table, LSN and operation); see 001 for why a
-- ReplacingMergeTree on it. customer_key is the app user id the row belongs to
-- (its user_id column, or its key in a users/accounts/customers table).
-- before/after are redacted JSON; changed_columns lists what an update changed.
CREATE TABLE IF NOT EXISTS cdc_changes (
    event_date      Date,
    at              DateTime,
    at_ms           Int64,
    customer_key    String,
    record_id       String,
    schema_name     String,
    table_name      String,
    op              String,
    lsn             String,
    commit_lsn      String,
    xid             UInt32,
    snapshot        UInt8,
    row_key         String,
    emails          Array(String),
    changed_columns Array(String),
    before          String,
    after           String,
    topic           String,
    kafka_partition Int32,
    kafka_offset    Int64,
    kafka_ms        Int64
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_date)
ORDER BY (customer_key, at_ms, record_id);
