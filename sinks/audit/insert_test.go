package audit

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestInsertMakesOnePartPerPartition: a batch larger than one native block
// still lands as one part per table partition (the server squashes the
// blocks of an INSERT), not one part per block, which would multiply the
// merges ClickHouse has to do. Merges are stopped on the tables so the count
// is the insert's own.
func TestInsertMakesOnePartPerPartition(t *testing.T) {
	h := newHarness(t)
	db := h.cfg.ClickHouseDatabase
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const table = "raw_events"
	if err := h.conn.Exec(ctx, "SYSTEM STOP MERGES "+db+"."+table); err != nil {
		t.Fatal(err)
	}
	defer h.conn.Exec(context.Background(), "SYSTEM START MERGES "+db+"."+table) //nolint:errcheck
	// Half of the mix is raw events: three and a half blocks of them.
	msgs := benchRecords(t, h.cfg.TopicPrefix, 7*blockRows)
	h.store(msgs...)
	want := 0
	for _, m := range msgs {
		if strings.HasPrefix(m.Topic, h.cfg.TopicPrefix+"raw.") {
			want++
		}
	}
	if want <= 3*blockRows {
		t.Fatalf("only %d raw events: not several blocks", want)
	}
	if got := h.distinct(table, "record_id"); got != want {
		t.Fatalf("%s holds %d records, want %d", table, got, want)
	}
	var parts, partitions uint64
	err := h.conn.QueryRow(ctx, "SELECT count(), uniqExact(partition) FROM system.parts WHERE database = ? AND table = ? AND active",
		db, table).Scan(&parts, &partitions)
	if err != nil {
		t.Fatal(err)
	}
	if parts == 0 || parts != partitions {
		t.Errorf("%s: %d rows made %d parts over %d partitions, want one part per partition", table, want, parts, partitions)
	}
}
