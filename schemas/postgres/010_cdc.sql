-- Snapshots taken by the CDC stage, per replication slot and table. The slot
-- itself holds the stream position (confirmed_flush_lsn); this table only
-- says which tables were copied in full and which still need it. A row with
-- done_at NULL is a snapshot still owed: the stage takes it on its next start
-- or as soon as it sees the request.
CREATE TABLE IF NOT EXISTS lr_cdc_snapshots (
    slot         text NOT NULL,
    table_name   text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    done_at      timestamptz,
    snapshot_lsn text,
    row_count    bigint,
    PRIMARY KEY (slot, table_name)
);
