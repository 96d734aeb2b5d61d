package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// benchRecords builds n Kafka records of the pipeline's mix, per 20: ten raw
// provider events (full Stripe, Kit and Circle bodies, redacted on the way
// in), two CDC changes, two identities, two entitlement states, two
// decisions, a mismatch and a sink result.
func benchRecords(b testing.TB, prefix string, n int) []kafka.Message {
	bodies := [][]byte{
		readProviderFile(b, "payloads/stripe_checkout.session.completed.json"),
		readProviderFile(b, "payloads/stripe_charge.refunded.json"),
		readProviderFile(b, "payloads/stripe_customer.subscription.updated.json"),
		readProviderFile(b, "payloads/circle_community_member_search_response.json"),
	}
	var kit struct {
		Events []json.RawMessage `json:"events"`
	}
	_ = json.Unmarshal(readProviderFile(b, "payloads/kit_subscriber.created.json"), &kit)
	bodies = append(bodies, kit.Events[0])
	providers := []string{"stripe", "stripe", "stripe", "circle", "kit"}
	base := time.Now().Add(-time.Hour)
	out := make([]kafka.Message, 0, n)
	add := func(topic string, v any, at time.Time) {
		val, err := json.Marshal(v)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, kafka.Message{Topic: prefix + topic, Partition: len(out) % 3, Offset: int64(len(out)), Value: val, Time: at})
	}
	for i := 0; len(out) < n; i++ {
		at := base.Add(time.Duration(i) * time.Millisecond)
		cid, email := fmt.Sprintf("c_%d", i%5000), fmt.Sprintf("user%d@example.org", i%5000)
		switch k := i % 20; {
		case k < 10:
			p := k % len(bodies)
			add("raw."+providers[p], schemas.RawEvent{V: 1, Provider: providers[p], EventID: fmt.Sprintf("evt_%d", i), Type: "t",
				ObjectID: fmt.Sprintf("obj_%d", i%5000), ProviderTime: at, ReceivedAt: at, Source: "webhook", Verification: "signature", Body: bodies[p]}, at)
		case k < 12:
			add("cdc.public.users", map[string]any{"v": 1, "op": "u", "schema": "public", "table": "users", "key": map[string]any{"id": i % 5000},
				"before": map[string]any{"id": i % 5000, "email": email, "plan": "basic"}, "after": map[string]any{"id": i % 5000, "email": email, "plan": "pro"},
				"source": map[string]any{"lsn": fmt.Sprintf("0/%X", i), "commit_time": at}}, at)
		case k < 14:
			add("identity", schemas.Identity{V: 1, CustomerID: cid, Email: email, Emails: []string{email}, Stripe: []string{"cus_" + cid},
				Kit: []string{strconv.Itoa(i % 5000)}, Version: int64(i), UpdatedAt: at}, at)
		case k < 16:
			add("entitlements", schemas.Entitlement{V: 1, CustomerID: cid, Email: email, Plan: "pro", Status: "active", Access: true,
				SourceEventIDs: []string{fmt.Sprintf("evt_%d", i-3)}, Version: int64(i), UpdatedAt: at, IngestedAt: at.Add(-time.Second)}, at)
		case k < 18:
			add("decisions", schemas.Decision{V: 1, DecisionID: fmt.Sprintf("d_%d", i), CustomerID: cid, Kind: "entitlement",
				Rule: "invoice.paid: paid invoice keeps access", After: json.RawMessage(`{"status":"active","access":true}`),
				CausingIDs: []string{fmt.Sprintf("evt_%d", i-5)}, At: at}, at)
		case k == 18:
			add("mismatches", schemas.Mismatch{V: 1, MismatchID: cid + "|k|circle", CustomerID: cid, Kind: "paid_no_circle_access", System: "circle", State: "open", At: at}, at)
		default:
			add("sink.results", schemas.SinkResult{V: 1, ActionID: fmt.Sprintf("a_%d", i), CustomerID: cid, Provider: "circle", Action: "tag",
				Target: "pro", Status: "ok", HTTPStatus: 200, Attempts: 1, EntitlementVersion: int64(i), At: at}, at)
		}
	}
	return out
}

// BenchmarkAuditInsert measures the writer's rate into ClickHouse: records
// as the consumer hands them over (decode, redaction, batched insert of
// every table), in batches of the default MaxBatch; and its insert alone,
// the same batches decoded ahead. Next to them, clickhouse-client inserting
// the very same rows from TabSeparated files, one client per table in
// parallel like the writer: the limit on this machine. Then the whole
// stage, Kafka to ClickHouse, with consumer group and offset commits.
func BenchmarkAuditInsert(b *testing.B) {
	// The binary's runtime settings (its GC target), restored afterwards.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	app.TuneRuntime()
	h := newHarness(b)
	ensureTopic(b, h, h.cfg.Topic(schemas.CDCTopic("public", "users")))
	const records = 200_000
	msgs := benchRecords(b, h.cfg.TopicPrefix, records)
	env := &app.Env{Cfg: h.cfg, Log: testLogger(), Health: h.health}
	w, err := New(env, Options{})
	if err != nil {
		b.Fatal(err)
	}
	w.conn = h.conn
	ctx := context.Background()
	all := w.build(msgs)
	rows := 0
	for _, n := range all.rows() {
		rows += n
	}
	dir := b.TempDir()
	files := writeTSV(b, dir, all)
	var built []*batch // the same batches, decoded ahead, for the insert alone
	for lo := 0; lo < len(msgs); lo += w.opt.MaxBatch {
		built = append(built, w.build(msgs[lo:min(lo+w.opt.MaxBatch, len(msgs))]))
	}
	// Background merges of earlier rounds' parts would land in whichever
	// round runs next; stopped, each round measures its inserts alone.
	for _, t := range (&batch{}).tables() {
		if err := h.conn.Exec(ctx, "SYSTEM STOP MERGES "+h.cfg.ClickHouseDatabase+"."+t.name()); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		// Two alternating rounds of the writer, of its insert alone and of
		// clickhouse-client; the best round of each is reported, which damps
		// what other load on the machine does to one side only.
		var writerTime, insertTime, clientTime time.Duration
		for round := 0; round < 2; round++ {
			start := time.Now()
			// The batches go through the consumer's pipeline, as in the
			// stage: the next is decoded while the previous is inserted.
			lo := 0
			next := func(context.Context) ([]kafka.Message, error) {
				if lo >= len(msgs) {
					return nil, io.EOF
				}
				batch := msgs[lo:min(lo+w.opt.MaxBatch, len(msgs))]
				lo += len(batch)
				return batch, nil
			}
			if err := kafka.Pipeline(ctx, 1, next, w.handle, nil); err != nil {
				b.Fatal(err)
			}
			if d := time.Since(start); writerTime == 0 || d < writerTime {
				writerTime = d
			}
			start = time.Now()
			for _, bt := range built {
				if err := insert(ctx, h.conn, h.cfg.ClickHouseDatabase, bt); err != nil {
					b.Fatal(err)
				}
			}
			if d := time.Since(start); insertTime == 0 || d < insertTime {
				insertTime = d
			}
			start = time.Now()
			var wg sync.WaitGroup
			errs := make([]error, len(files))
			for i, f := range files {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = clientInsert(h.cfg.ClickHouseAddr, h.cfg.ClickHouseDatabase, f)
				}()
			}
			wg.Wait()
			if d := time.Since(start); clientTime == 0 || d < clientTime {
				clientTime = d
			}
			for _, err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
		}
		writerRate, clientRate := float64(rows)/writerTime.Seconds(), float64(rows)/clientTime.Seconds()
		insertRate := float64(rows) / insertTime.Seconds()
		b.ReportMetric(writerRate, "rows/s")
		b.ReportMetric(float64(len(msgs))/writerTime.Seconds(), "records/s")
		b.ReportMetric(clientRate, "client_rows/s")
		b.ReportMetric(writerRate/clientRate*100, "%_of_client")
		b.ReportMetric(insertRate, "insert_only_rows/s")
		b.ReportMetric(insertRate/clientRate*100, "insert_only_%_of_client")
		b.ReportMetric(float64(rows), "rows")

		// The whole stage, in a database and topics of its own with merges
		// on: produce to Kafka first (not timed), then run the writer until
		// its group has committed every record.
		b.StopTimer()
		hs := newHarness(b)
		ensureTopic(b, hs, hs.cfg.Topic(schemas.CDCTopic("public", "users")))
		stageRecords := benchRecords(b, hs.cfg.TopicPrefix, 100_000)
		produceAll(b, hs, stageRecords)
		b.StartTimer()
		// Steady state: after the first batch, which also waits for the
		// consumer group to form.
		var (
			mu         sync.Mutex
			firstAt    time.Time
			firstCount int
		)
		start := time.Now()
		rw := hs.start(Options{GroupID: hs.cfg.TopicPrefix + "bench" + strconv.Itoa(it)}, func(w *Writer) {
			w.afterInsert = func(records int, _ map[string]int) error {
				mu.Lock()
				defer mu.Unlock()
				if firstAt.IsZero() {
					firstAt, firstCount = time.Now(), records
				}
				return nil
			}
		})
		hs.waitCommitted(rw, 5*time.Minute)
		end := time.Now()
		_ = rw.stop()
		b.ReportMetric(float64(len(stageRecords))/end.Sub(start).Seconds(), "stage_records/s")
		if steady := end.Sub(firstAt); len(stageRecords) > firstCount && steady > 0 {
			b.ReportMetric(float64(len(stageRecords)-firstCount)/steady.Seconds(), "stage_steady_records/s")
		}
	}
}

// produceAll writes records to their topics in chunks small enough that
// one partition's produce request stays under the broker's 1 MB limit.
func produceAll(b *testing.B, h *harness, msgs []kafka.Message) {
	b.Helper()
	ctx := context.Background()
	const chunk = 600
	for lo := 0; lo < len(msgs); lo += chunk {
		part := slices.Clone(msgs[lo:min(lo+chunk, len(msgs))])
		for i := range part {
			part[i].Partition, part[i].Offset, part[i].Key = 0, 0, []byte(strconv.Itoa(lo+i))
		}
		if err := h.prod.Write(ctx, part...); err != nil {
			msg := err.Error()
			b.Fatal(msg[:min(len(msg), 300)])
		}
	}
}

// tsvFile is one table's rows in TabSeparated form.
type tsvFile struct {
	path, table string
	cols        []string
}

func writeTSV(b *testing.B, dir string, bt *batch) []tsvFile {
	b.Helper()
	var out []tsvFile
	for _, t := range bt.tables() {
		cols := t.columns()
		n := cols[0].len()
		if n == 0 {
			continue
		}
		f := tsvFile{path: filepath.Join(dir, t.name()+".tsv"), table: t.name()}
		fh, err := os.Create(f.path)
		if err != nil {
			b.Fatal(err)
		}
		bw := bufio.NewWriterSize(fh, 1<<20)
		for _, c := range cols {
			f.cols = append(f.cols, c.name)
		}
		for i := 0; i < n; i++ {
			for j, c := range cols {
				if j > 0 {
					bw.WriteByte('\t')
				}
				if c.name == "event_date" {
					bw.WriteString((*c.ptr.(*[]time.Time))[i].Format("2006-01-02"))
					continue
				}
				bw.WriteString(tsvValue(c.ptr, i))
			}
			bw.WriteByte('\n')
		}
		if err := bw.Flush(); err != nil {
			b.Fatal(err)
		}
		fh.Close()
		out = append(out, f)
	}
	return out
}

var tsvEscaper = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`)

func tsvValue(p any, i int) string {
	switch v := p.(type) {
	case *[]string:
		return tsvEscaper.Replace((*v)[i])
	case *[]int64:
		return strconv.FormatInt((*v)[i], 10)
	case *[]int32:
		return strconv.FormatInt(int64((*v)[i]), 10)
	case *[]uint32:
		return strconv.FormatUint(uint64((*v)[i]), 10)
	case *[]uint8:
		return strconv.Itoa(int((*v)[i]))
	case *[]float64:
		return strconv.FormatFloat((*v)[i], 'g', -1, 64)
	case *[]time.Time:
		return (*v)[i].UTC().Format("2006-01-02 15:04:05")
	case *[][]string:
		parts := make([]string, len((*v)[i]))
		for k, s := range (*v)[i] {
			parts[k] = "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
		}
		return tsvEscaper.Replace("[" + strings.Join(parts, ",") + "]")
	}
	panic(fmt.Sprintf("tsv: %T", p))
}

func clientInsert(addr, db string, f tsvFile) error {
	host, port, _ := strings.Cut(addr, ":")
	in, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer in.Close()
	cmd := exec.Command("clickhouse-client", "--host", host, "--port", port, "--query",
		"INSERT INTO "+db+"."+f.table+" ("+strings.Join(f.cols, ", ")+") FORMAT TabSeparated")
	cmd.Stdin = in
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("clickhouse-client %s: %v: %s", f.table, err, out)
	}
	return nil
}

// BenchmarkAuditTimeline loads about a million audit rows (13,000 customers
// with identities, raw events, CDC changes, decisions, entitlement states,
// mismatches and sink actions over two months) and measures the timeline of
// random customers by email, and the why answer.
func BenchmarkAuditTimeline(b *testing.B) {
	h := newHarness(b)
	ctx := context.Background()
	const customers = 13_400
	payload := string(mustRedact(b, readProviderFile(b, "payloads/stripe_checkout.session.completed.json")))
	rows := 0
	start := time.Now()
	for lo := 0; lo < customers; lo += 1000 {
		bt := &batch{}
		for c := lo; c < min(lo+1000, customers); c++ {
			genCustomer(bt, c, payload)
		}
		for _, n := range bt.rows() {
			rows += n
		}
		if err := insert(ctx, h.conn, h.cfg.ClickHouseDatabase, bt); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("loaded %d rows in %s", rows, time.Since(start).Round(time.Millisecond))
	// Let ClickHouse merge the freshly inserted parts, as it does in the
	// background of a running system, so the figures are of a steady state.
	for _, t := range (&batch{}).tables() {
		if err := h.conn.Exec(ctx, "OPTIMIZE TABLE "+h.cfg.ClickHouseDatabase+"."+t.name()+" FINAL"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows), "rows_loaded")
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		var tl, why []float64
		for q := 0; q < 60; q++ {
			c := rng.IntN(customers)
			t0 := time.Now()
			res, err := Timeline(ctx, h.conn, h.cfg.ClickHouseDatabase, TimelineQuery{Email: genEmail(c)})
			if err != nil {
				b.Fatal(err)
			}
			tl = append(tl, float64(time.Since(t0).Microseconds())/1000)
			if len(res.Entries) != 50 { // every row but the email index rows
				b.Fatalf("customer %d: %d entries, want 50", c, len(res.Entries))
			}
			t0 = time.Now()
			if _, err := Why(ctx, h.conn, h.cfg.ClickHouseDatabase, WhyQuery{Email: genEmail(c)}); err != nil {
				b.Fatal(err)
			}
			why = append(why, float64(time.Since(t0).Microseconds())/1000)
		}
		b.ReportMetric(percentile(tl, 0.5), "timeline_p50_ms")
		b.ReportMetric(percentile(tl, 0.95), "timeline_p95_ms")
		b.ReportMetric(percentile(tl, 1), "timeline_max_ms")
		b.ReportMetric(percentile(why, 0.5), "why_p50_ms")
		b.ReportMetric(percentile(why, 0.95), "why_p95_ms")
	}
}

func mustRedact(b *testing.B, doc []byte) []byte {
	r, _ := NewRedactor(DefaultDrop)
	out, err := r.Redact(doc)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func genEmail(c int) string { return fmt.Sprintf("customer%d@example.org", c) }

// genCustomer appends one customer's ~75 audit rows to bt directly (no
// Kafka, no JSON): an identity (4 links), 25 raw events with their email
// index rows, a CDC change, 5 decisions, 5 entitlement states, 8 sink
// actions and 2 mismatch transitions, spread over the last 60 days.
func genCustomer(bt *batch, c int, payload string) {
	cid, email, cus, kit := fmt.Sprintf("c_%d", c), genEmail(c), fmt.Sprintf("cus_%d", c), strconv.Itoa(1_000_000+c)
	first := time.Now().Add(-60 * 24 * time.Hour).Add(time.Duration(c) * time.Minute)
	at := func(i int) time.Time { return first.Add(time.Duration(i) * 2 * time.Hour) }
	o := func(tb *origin, i int) {
		m := kafka.Message{Topic: "lr.bench", Partition: c % 6, Offset: int64(c*100 + i), Time: at(i)}
		tb.add(&m)
	}
	id := &bt.identity
	for _, l := range [][2]string{{"customer", cid}, {"email", email}, {"stripe", cus}, {"kit", kit}} {
		id.base.add(at(0))
		id.key, id.kind, id.customerID = append(id.key, l[1]), append(id.kind, l[0]), append(id.customerID, cid)
		id.version, id.recordID = append(id.version, 1), append(id.recordID, cid+"@v1")
		id.email, id.userID, id.mergedInto = append(id.email, email), append(id.userID, ""), append(id.mergedInto, "")
		o(&id.origin, 0)
	}
	r := &bt.raw
	for i := 0; i < 25; i++ {
		key, provider := cus, "stripe"
		if i%5 == 4 {
			key, provider = kit, "kit"
		}
		rid := fmt.Sprintf("%s:evt_%d_%d@%d", provider, c, i, at(i).UnixNano())
		r.base.add(at(i))
		r.customerKey, r.recordID, r.provider = append(r.customerKey, key), append(r.recordID, rid), append(r.provider, provider)
		r.eventID, r.typ, r.objectID = append(r.eventID, fmt.Sprintf("evt_%d_%d", c, i)), append(r.typ, "invoice.paid"), append(r.objectID, key)
		r.providerCustomer, r.emails = append(r.providerCustomer, key), append(r.emails, []string{email})
		r.providerTime, r.providerMS = append(r.providerTime, at(i)), append(r.providerMS, at(i).UnixMilli())
		r.source, r.verification = append(r.source, "webhook"), append(r.verification, "signature")
		r.duplicate, r.firstSeenMS = append(r.duplicate, boolByte(i%10 == 9)), append(r.firstSeenMS, 0)
		r.requestID, r.payload, r.payloadError = append(r.requestID, ""), append(r.payload, payload), append(r.payloadError, "")
		o(&r.origin, i)
		bt.keys.add("raw_events", key, rid, at(i), email)
	}
	cd := &bt.cdc
	cd.base.add(at(1))
	cd.customerKey, cd.recordID = append(cd.customerKey, strconv.Itoa(c)), append(cd.recordID, fmt.Sprintf("cdc:public.users:0/%X:c", c))
	cd.schema, cd.table, cd.op = append(cd.schema, "public"), append(cd.table, "users"), append(cd.op, "c")
	cd.lsn, cd.commitLSN, cd.xid, cd.snapshot = append(cd.lsn, "0/1"), append(cd.commitLSN, "0/1"), append(cd.xid, 1), append(cd.snapshot, 0)
	cd.rowKey, cd.emails, cd.changed = append(cd.rowKey, `{"id":1}`), append(cd.emails, []string{email}), append(cd.changed, []string{})
	cd.before, cd.after = append(cd.before, ""), append(cd.after, `{"id":1,"email":"`+email+`"}`)
	o(&cd.origin, 1)
	bt.keys.add("cdc_changes", strconv.Itoa(c), cd.recordID[len(cd.recordID)-1], at(1), email)
	for i := 0; i < 5; i++ {
		d := &bt.decisions
		d.base.add(at(i*5 + 1))
		d.customerID, d.decisionID, d.kind = append(d.customerID, cid), append(d.decisionID, fmt.Sprintf("d_%d_%d", c, i)), append(d.kind, "entitlement")
		d.rule, d.before, d.after = append(d.rule, "invoice.paid: paid invoice keeps access"), append(d.before, ""), append(d.after, `{"access":true}`)
		d.causing, d.flagged, d.providerMS = append(d.causing, []string{fmt.Sprintf("evt_%d_%d", c, i*5)}), append(d.flagged, 0), append(d.providerMS, 0)
		o(&d.origin, i*5+1)
		e := &bt.entitlements
		e.base.add(at(i*5 + 1))
		e.customerID, e.version, e.recordID = append(e.customerID, cid), append(e.version, int64(i+1)), append(e.recordID, fmt.Sprintf("%s@v%d", cid, i+1))
		e.email, e.userID, e.plan, e.status = append(e.email, email), append(e.userID, ""), append(e.plan, "pro"), append(e.status, "active")
		e.access, e.periodEndMS, e.graceUntilMS = append(e.access, 1), append(e.periodEndMS, 0), append(e.graceUntilMS, 0)
		e.flagged, e.flagReason, e.sourceEventIDs = append(e.flagged, 0), append(e.flagReason, ""), append(e.sourceEventIDs, []string{})
		e.lastEventMS, e.ingestedMS, e.latencyMS = append(e.lastEventMS, 0), append(e.ingestedMS, at(i*5).UnixMilli()), append(e.latencyMS, 800)
		e.circleIDs, e.kitIDs, e.deleted = append(e.circleIDs, []string{}), append(e.kitIDs, []string{kit}), append(e.deleted, 0)
		o(&e.origin, i*5+1)
	}
	for i := 0; i < 8; i++ {
		s := &bt.sinks
		s.base.add(at(i*3 + 2))
		s.customerID, s.actionID, s.recordID = append(s.customerID, cid), append(s.actionID, fmt.Sprintf("a_%d_%d", c, i)), append(s.recordID, fmt.Sprintf("a_%d_%d:ok", c, i))
		s.email, s.provider, s.action, s.target = append(s.email, email), append(s.provider, "circle"), append(s.action, "tag"), append(s.target, "pro")
		s.status, s.httpStatus, s.errText = append(s.status, "ok"), append(s.httpStatus, 200), append(s.errText, "")
		s.attempts, s.durationMS, s.entVersion = append(s.attempts, 1), append(s.durationMS, 12.5), append(s.entVersion, int64(i/2+1))
		o(&s.origin, i*3+2)
	}
	for i, state := range []string{"open", "closed"} {
		m := &bt.mismatches
		m.base.add(at(i + 20))
		m.customerID, m.mismatchID, m.recordID = append(m.customerID, cid), append(m.mismatchID, cid+"|k|circle"), append(m.recordID, fmt.Sprintf("%s|k|circle:%s", cid, state))
		m.kind, m.system, m.state, m.detail = append(m.kind, "paid_no_circle_access"), append(m.system, "circle"), append(m.state, state), append(m.detail, "")
		o(&m.origin, i+20)
	}
}

func percentile(vs []float64, p float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	i := int(p * float64(len(s)))
	return s[min(i, len(s)-1)]
}

// BenchmarkAuditDecode is the writer's CPU cost per record before the
// insert: decoding, redaction and building the columns, on one core. It
// reports process CPU time, which other load on the machine disturbs less
// than wall time.
func BenchmarkAuditDecode(b *testing.B) {
	msgs := benchRecords(b, testPrefix, 20_000)
	r, _ := NewRedactor(DefaultDrop)
	d := newDecoder(r, testPrefix)
	b.ResetTimer()
	cpu0 := cpuTime()
	for it := 0; it < b.N; it++ {
		bt := &batch{}
		d.reserve(bt, msgs)
		for i := range msgs {
			d.add(bt, &msgs[i])
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*len(msgs)), "cpu_ns/record")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
