package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/launchready/launchready/internal/kafka"
)

// column is one column of a table buffer: its name and a pointer to its
// values (*[]string, *[]int64, *[]int32, *[]uint32, *[]uint8, *[]float64,
// *[]time.Time or *[][]string).
type column struct {
	name string
	ptr  any
}

// table is a columnar buffer of rows for one ClickHouse table.
type table interface {
	name() string
	columns() []column
}

// base holds the columns every audit table has.
type base struct {
	eventDate []time.Time
	at        []time.Time
	atMS      []int64
}

func (b *base) add(at time.Time) {
	at = clampTime(at)
	b.eventDate = append(b.eventDate, dateOf(at))
	b.at = append(b.at, at)
	b.atMS = append(b.atMS, at.UnixMilli())
}

func (b *base) cols() []column {
	return []column{{"event_date", &b.eventDate}, {"at", &b.at}, {"at_ms", &b.atMS}}
}

// origin holds where a row came from in Kafka.
type origin struct {
	topic     []string
	partition []int32
	offset    []int64
	kafkaMS   []int64
}

func (o *origin) add(m *kafka.Message) {
	o.topic = append(o.topic, m.Topic)
	o.partition = append(o.partition, int32(m.Partition))
	o.offset = append(o.offset, m.Offset)
	o.kafkaMS = append(o.kafkaMS, msOf(m.Time))
}

func (o *origin) cols() []column {
	return []column{{"topic", &o.topic}, {"kafka_partition", &o.partition}, {"kafka_offset", &o.offset}, {"kafka_ms", &o.kafkaMS}}
}

type rawTable struct {
	base
	customerKey, recordID, provider, eventID, typ, objectID, providerCustomer []string
	emails                                                                    [][]string
	providerTime                                                              []time.Time
	providerMS                                                                []int64
	source, verification                                                      []string
	duplicate                                                                 []uint8
	firstSeenMS                                                               []int64
	requestID, payload, payloadError                                          []string
	origin
}

func (t *rawTable) name() string { return "raw_events" }
func (t *rawTable) columns() []column {
	return join(t.base.cols(), []column{
		{"customer_key", &t.customerKey}, {"record_id", &t.recordID}, {"provider", &t.provider},
		{"event_id", &t.eventID}, {"type", &t.typ}, {"object_id", &t.objectID},
		{"provider_customer", &t.providerCustomer}, {"emails", &t.emails},
		{"provider_time", &t.providerTime}, {"provider_ms", &t.providerMS}, {"source", &t.source},
		{"verification", &t.verification}, {"duplicate", &t.duplicate}, {"first_seen_ms", &t.firstSeenMS},
		{"request_id", &t.requestID}, {"payload", &t.payload}, {"payload_error", &t.payloadError},
	}, t.origin.cols())
}

type keysTable struct {
	eventDate                       []time.Time
	key, tbl, customerKey, recordID []string
	atMS                            []int64
}

func (t *keysTable) name() string { return "audit_keys" }
func (t *keysTable) columns() []column {
	return []column{{"event_date", &t.eventDate}, {"key", &t.key}, {"tbl", &t.tbl},
		{"customer_key", &t.customerKey}, {"at_ms", &t.atMS}, {"record_id", &t.recordID}}
}

// add indexes record under every key in keys but its customer key (which
// its own table's sorting key already covers).
func (t *keysTable) add(tbl, customerKey, recordID string, at time.Time, keys ...string) {
	for i, k := range keys {
		if k == "" || k == customerKey || contains(keys[:i], k) {
			continue
		}
		t.eventDate = append(t.eventDate, dateOf(clampTime(at)))
		t.key = append(t.key, k)
		t.tbl = append(t.tbl, tbl)
		t.customerKey = append(t.customerKey, customerKey)
		t.atMS = append(t.atMS, clampTime(at).UnixMilli())
		t.recordID = append(t.recordID, recordID)
	}
}

type cdcTable struct {
	base
	customerKey, recordID, schema, table, op, lsn, commitLSN []string
	xid                                                      []uint32
	snapshot                                                 []uint8
	rowKey                                                   []string
	emails, changed                                          [][]string
	before, after                                            []string
	origin
}

func (t *cdcTable) name() string { return "cdc_changes" }
func (t *cdcTable) columns() []column {
	return join(t.base.cols(), []column{
		{"customer_key", &t.customerKey}, {"record_id", &t.recordID}, {"schema_name", &t.schema},
		{"table_name", &t.table}, {"op", &t.op}, {"lsn", &t.lsn}, {"commit_lsn", &t.commitLSN},
		{"xid", &t.xid}, {"snapshot", &t.snapshot}, {"row_key", &t.rowKey}, {"emails", &t.emails},
		{"changed_columns", &t.changed}, {"before", &t.before}, {"after", &t.after},
	}, t.origin.cols())
}

type identityTable struct {
	base
	key, kind, customerID []string
	version               []int64
	recordID, email       []string
	userID, mergedInto    []string
	origin
}

func (t *identityTable) name() string { return "identity_links" }
func (t *identityTable) columns() []column {
	return join(t.base.cols(), []column{
		{"key", &t.key}, {"key_kind", &t.kind}, {"customer_id", &t.customerID}, {"version", &t.version},
		{"record_id", &t.recordID}, {"email", &t.email}, {"user_id", &t.userID}, {"merged_into", &t.mergedInto},
	}, t.origin.cols())
}

type entitlementTable struct {
	base
	customerID                         []string
	version                            []int64
	recordID, email, userID, plan      []string
	status                             []string
	access                             []uint8
	periodEndMS, graceUntilMS          []int64
	flagged                            []uint8
	flagReason                         []string
	sourceEventIDs                     [][]string
	lastEventMS, ingestedMS, latencyMS []int64
	circleIDs, kitIDs                  [][]string
	deleted                            []uint8
	origin
}

func (t *entitlementTable) name() string { return "entitlements" }
func (t *entitlementTable) columns() []column {
	return join(t.base.cols(), []column{
		{"customer_id", &t.customerID}, {"version", &t.version}, {"record_id", &t.recordID},
		{"email", &t.email}, {"user_id", &t.userID}, {"plan", &t.plan}, {"status", &t.status},
		{"access", &t.access}, {"period_end_ms", &t.periodEndMS}, {"grace_until_ms", &t.graceUntilMS},
		{"flagged", &t.flagged}, {"flag_reason", &t.flagReason}, {"source_event_ids", &t.sourceEventIDs},
		{"last_event_ms", &t.lastEventMS}, {"ingested_ms", &t.ingestedMS}, {"latency_ms", &t.latencyMS},
		{"circle_member_ids", &t.circleIDs}, {"kit_subscriber_ids", &t.kitIDs}, {"deleted", &t.deleted},
	}, t.origin.cols())
}

type decisionTable struct {
	base
	customerID, decisionID, kind, rule, before, after []string
	causing                                           [][]string
	flagged                                           []uint8
	providerMS                                        []int64
	origin
}

func (t *decisionTable) name() string { return "decisions" }
func (t *decisionTable) columns() []column {
	return join(t.base.cols(), []column{
		{"customer_id", &t.customerID}, {"decision_id", &t.decisionID}, {"kind", &t.kind},
		{"rule", &t.rule}, {"before", &t.before}, {"after", &t.after},
		{"causing_event_ids", &t.causing}, {"flagged", &t.flagged}, {"provider_ms", &t.providerMS},
	}, t.origin.cols())
}

type mismatchTable struct {
	base
	customerID, mismatchID, recordID, kind, system, state, detail []string
	origin
}

func (t *mismatchTable) name() string { return "mismatches" }
func (t *mismatchTable) columns() []column {
	return join(t.base.cols(), []column{
		{"customer_id", &t.customerID}, {"mismatch_id", &t.mismatchID}, {"record_id", &t.recordID},
		{"kind", &t.kind}, {"system", &t.system}, {"state", &t.state}, {"detail", &t.detail},
	}, t.origin.cols())
}

type sinkTable struct {
	base
	customerID, actionID, recordID, email, provider, action, target, status []string
	httpStatus                                                              []int32
	errText                                                                 []string
	attempts                                                                []int32
	durationMS                                                              []float64
	entVersion                                                              []int64
	origin
}

func (t *sinkTable) name() string { return "sink_actions" }
func (t *sinkTable) columns() []column {
	return join(t.base.cols(), []column{
		{"customer_id", &t.customerID}, {"action_id", &t.actionID}, {"record_id", &t.recordID},
		{"email", &t.email}, {"provider", &t.provider}, {"action", &t.action}, {"target", &t.target},
		{"status", &t.status}, {"http_status", &t.httpStatus}, {"error", &t.errText},
		{"attempts", &t.attempts}, {"duration_ms", &t.durationMS}, {"entitlement_version", &t.entVersion},
	}, t.origin.cols())
}

type dlqTable struct {
	base
	customerKey, recordID, stage, sourceTopic, recordKey, reason, record []string
	origin
}

func (t *dlqTable) name() string { return "dlq" }
func (t *dlqTable) columns() []column {
	return join(t.base.cols(), []column{
		{"customer_key", &t.customerKey}, {"record_id", &t.recordID}, {"stage", &t.stage},
		{"source_topic", &t.sourceTopic}, {"record_key", &t.recordKey}, {"reason", &t.reason},
		{"record", &t.record},
	}, t.origin.cols())
}

type rejectionTable struct {
	base
	firstMS                    []int64
	recordID, provider, reason []string
	httpStatus                 []int32
	count                      []int64
	requestIDs                 [][]string
	instance                   []string
	origin
}

func (t *rejectionTable) name() string { return "rejected_webhooks" }
func (t *rejectionTable) columns() []column {
	return join(t.base.cols(), []column{
		{"first_ms", &t.firstMS}, {"record_id", &t.recordID}, {"provider", &t.provider}, {"reason", &t.reason},
		{"http_status", &t.httpStatus}, {"count", &t.count}, {"request_ids", &t.requestIDs}, {"instance", &t.instance},
	}, t.origin.cols())
}

// batch is the rows of one Kafka batch, by table.
type batch struct {
	raw          rawTable
	keys         keysTable
	cdc          cdcTable
	identity     identityTable
	entitlements entitlementTable
	decisions    decisionTable
	mismatches   mismatchTable
	sinks        sinkTable
	dlq          dlqTable
	rejections   rejectionTable

	// verdicts memoises redaction verdicts for the goroutine building b.
	verdicts map[string]bool
}

func (b *batch) verdictMap() map[string]bool {
	if b.verdicts == nil {
		b.verdicts = make(map[string]bool, 256)
	}
	return b.verdicts
}

func (b *batch) tables() []table {
	return []table{&b.raw, &b.keys, &b.cdc, &b.identity, &b.entitlements, &b.decisions, &b.mismatches, &b.sinks, &b.dlq, &b.rejections}
}

// rows returns the number of rows of each table that has any.
func (b *batch) rows() map[string]int {
	out := map[string]int{}
	for _, t := range b.tables() {
		if n := t.columns()[0].len(); n > 0 {
			out[t.name()] = n
		}
	}
	return out
}

// merge appends the rows of others to b, growing each column once.
func (b *batch) merge(others ...*batch) {
	mine := b.tables()
	for i := range mine {
		n := 0
		for _, o := range others {
			n += o.tables()[i].columns()[0].len()
		}
		reserveTable(mine[i], n)
		dst := mine[i].columns()
		for _, o := range others {
			src := o.tables()[i].columns()
			for j := range dst {
				dst[j].values().appendFrom(src[j].ptr)
			}
		}
	}
}

// values is a column's slice, whatever its element type.
type values interface {
	len() int
	slice(lo, hi int) any // rows [lo, hi), sharing memory, for the driver
	grow(n int)           // room for n more rows
	appendFrom(src any)   // the rows of a column of the same type
}

type sliceOf[T any] struct{ p *[]T }

func (v sliceOf[T]) len() int             { return len(*v.p) }
func (v sliceOf[T]) slice(lo, hi int) any { return (*v.p)[lo:hi] }
func (v sliceOf[T]) grow(n int)           { *v.p = slices.Grow(*v.p, n) }
func (v sliceOf[T]) appendFrom(src any)   { *v.p = append(*v.p, *src.(*[]T)...) }
func (c column) values() values           { return valuesOf(c.ptr) }
func (c column) len() int                 { return c.values().len() }

// valuesOf adapts a column pointer of one of the types column lists.
func valuesOf(p any) values {
	switch v := p.(type) {
	case *[]string:
		return sliceOf[string]{v}
	case *[]int64:
		return sliceOf[int64]{v}
	case *[]int32:
		return sliceOf[int32]{v}
	case *[]uint32:
		return sliceOf[uint32]{v}
	case *[]uint8:
		return sliceOf[uint8]{v}
	case *[]float64:
		return sliceOf[float64]{v}
	case *[]time.Time:
		return sliceOf[time.Time]{v}
	case *[][]string:
		return sliceOf[[]string]{v}
	}
	panic(fmt.Sprintf("audit: column type %T", p))
}

// reserveTable makes room for n more rows in every column of t.
func reserveTable(t table, n int) {
	if n <= 0 {
		return
	}
	for _, c := range t.columns() {
		c.values().grow(n)
	}
}

// Inserter is the part of a ClickHouse connection the writer inserts through
// (clickhouse-go's driver.Conn has it).
type Inserter interface {
	PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error)
}

// insert writes every non-empty table of b to database db, the tables in
// parallel. It returns once ClickHouse acknowledged every insert, or with
// the errors of those that failed; a failed call may have stored some of the
// rows, so retrying it is safe only because the tables collapse re-inserted
// rows (see schemas/clickhouse/001_raw_events.sql).
func insert(ctx context.Context, conn Inserter, db string, b *batch) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, t := range b.tables() {
		cols := t.columns()
		if cols[0].len() == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := insertTable(ctx, conn, db, t.name(), cols); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// blockRows is the most rows insertTable sends as one native block.
const blockRows = 16384

func insertTable(ctx context.Context, conn Inserter, db, name string, cols []column) error {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	// Inserts go through the native batch API: ClickHouse 18.16 does not
	// answer an INSERT … VALUES sent as a plain query over this driver.
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+"."+name+" ("+strings.Join(names, ", ")+")")
	if err != nil {
		return fmt.Errorf("insert into %s: %w", name, err)
	}
	// The rows go as blocks of blockRows within the one INSERT: the driver
	// encodes a block into buffers it reuses, where one block of the whole
	// batch would grow them by copying, and the server squashes the blocks
	// into one part per partition (min_insert_block_size_rows).
	n := cols[0].len()
	for lo := 0; lo < n; lo += blockRows {
		hi := min(lo+blockRows, n)
		for i, c := range cols {
			if err := b.Column(i).Append(c.values().slice(lo, hi)); err != nil {
				_ = b.Abort()
				return fmt.Errorf("insert into %s: column %s: %w", name, c.name, err)
			}
		}
		if hi < n {
			if err := b.Flush(); err != nil {
				_ = b.Abort()
				return fmt.Errorf("insert into %s: %w", name, err)
			}
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", name, err)
	}
	return nil
}

func join(parts ...[]column) []column {
	var out []column
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// epoch is what a missing time is stored as: DateTime cannot hold Go's zero time.
var epoch = time.Unix(0, 0).UTC()

// dateOf is the UTC day of t, as the Date column stores it.
func dateOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// msOf is t in milliseconds since the epoch, 0 for the zero time.
func msOf(t time.Time) int64 {
	if t.IsZero() || t.Before(epoch) {
		return 0
	}
	return t.UnixMilli()
}

// clampTime keeps t within what a DateTime column holds.
func clampTime(t time.Time) time.Time {
	if t.IsZero() || t.Before(epoch) {
		return epoch
	}
	if max := time.Unix(1<<32-1, 0); t.After(max) {
		return max
	}
	return t.UTC()
}
