package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/launchready/launchready/schemas"
)

// A snapshot is read in a REPEATABLE READ transaction that imported the
// snapshot exported by CREATE_REPLICATION_SLOT: it holds exactly the
// transactions that committed before the slot's consistent point. Its rows
// are emitted (op r) into the stream at that point:
//
//   - on first start, the point is the main slot's: rows go out first, then
//     streaming starts there;
//   - later (a table added to the publication, a snapshot cut short by a
//     crash), a temporary slot is created while the reader is paused, and
//     the rows go out when the stream reaches its point.
//
// Either way every change is either in the snapshot or streamed after it,
// never both, never neither, and per-key order holds.

// snapshotJob is a snapshot imported and waiting to be emitted.
type snapshotJob struct {
	point  LSN
	at     time.Time // the server's clock just before the point: the rows' commit_time
	tables []string  // schema.table
	since  time.Time // requests up to this time are completed by the job
	conn   *pgx.Conn // in the transaction holding the snapshot
}

func (j *snapshotJob) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = j.conn.Close(ctx)
}

// importJob imports the snapshot of a just created slot for the owed tables.
// It returns nil when no table is owed.
func (s *session) importJob(created createdSlot, at time.Time) (*snapshotJob, error) {
	tables, since, err := s.c.state.pendingSince(s.ctx)
	if err != nil || len(tables) == 0 {
		return nil, err
	}
	conn, err := s.c.importSnapshot(s.ctx, created.SnapshotName)
	if err != nil {
		return nil, err
	}
	return &snapshotJob{point: created.ConsistentPoint, at: at, tables: tables, since: since, conn: conn}, nil
}

// dbNow reads the app database's clock. A snapshot's rows carry the time
// read just before its slot was created as their commit_time: no earlier
// than the commits they contain, no later than the ones streamed after them,
// on the same clock as those commits' times.
func (c *CDC) dbNow(ctx context.Context) (time.Time, error) {
	var t time.Time
	if err := c.app.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t); err != nil {
		return t, fmt.Errorf("app database: %w", err)
	}
	return t.UTC(), nil
}

// prepareJob takes a snapshot for the owed tables through a temporary slot.
// It runs on the reader's goroutine, so the stream is paused meanwhile: the
// temporary slot's point lies after everything already read.
func (s *session) prepareJob() (*snapshotJob, error) {
	tables, since, err := s.c.state.pendingSince(s.ctx)
	if err != nil || len(tables) == 0 {
		return nil, err
	}
	repl, err := connectReplication(s.ctx, s.c.cfg.PostgresURL, nil)
	if err != nil {
		return nil, classifyConnectError(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = repl.Close(ctx) // drops the temporary slot; the imported snapshot lives on
	}()
	slot := s.c.cfg.CDCSlot
	if len(slot) > 40 {
		slot = slot[:40]
	}
	name := fmt.Sprintf("%s_snap_%d", slot, time.Now().UnixNano()%1_000_000_000)
	at, err := s.c.dbNow(s.ctx)
	if err != nil {
		return nil, err
	}
	created, err := createSlot(s.ctx, repl, name, true)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %v: create temporary slot: %w", tables, err)
	}
	conn, err := s.c.importSnapshot(s.ctx, created.SnapshotName)
	if err != nil {
		return nil, err
	}
	s.log.Info("snapshot taken; emitting it when the stream reaches its point", "tables", tables, "point", created.ConsistentPoint.String())
	return &snapshotJob{point: created.ConsistentPoint, at: at, tables: tables, since: since, conn: conn}, nil
}

// importSnapshot opens a connection in a read-only REPEATABLE READ
// transaction on the exported snapshot.
func (c *CDC) importSnapshot(ctx context.Context, name string) (*pgx.Conn, error) {
	pc, err := pgx.ParseConfig(c.cfg.PostgresURL)
	if err != nil {
		return nil, errors.New("app database: the URL does not parse as a postgres URL")
	}
	for k, v := range sessionParams {
		pc.RuntimeParams[k] = v
	}
	pc.RuntimeParams["application_name"] = "launchready-cdc-snapshot"
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("snapshot connection: %w", err)
	}
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"); err == nil {
		_, err = conn.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(name))
	}
	if err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("import snapshot %s: %w", name, err)
	}
	return conn, nil
}

// inject emits the job's rows into the stream, then a marker that records
// the snapshot as done once Kafka acknowledged all of it.
func (s *session) inject(job *snapshotJob) error {
	defer job.close()
	started := time.Now()
	tail := sourceTail(job.point, 0, job.at, true, s.c.cfg.CDCSlot)
	counts := map[string]int64{}
	for _, t := range job.tables {
		rel, err := s.snapshotRelation(job.conn, t)
		if err != nil {
			return err
		}
		if rel == nil {
			s.log.Warn("table to snapshot is gone or no longer published", "table", t)
			continue
		}
		n, err := s.copyTable(job.conn, rel, job.point, tail)
		if err != nil {
			return fmt.Errorf("snapshot of %s: %w", t, err)
		}
		counts[t] = n
	}
	if _, err := job.conn.Exec(s.ctx, "COMMIT"); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	c, point, tables, since := s.c, job.point, job.tables, job.since
	s.chunk = append(s.chunk, item{onDone: func() { c.snapshotDone(tables, point, counts, since) }})
	s.log.Info("snapshot emitted", "rows", counts, "point", point.String(), "took", time.Since(started).Round(time.Millisecond).String())
	return s.flush()
}

// snapshotDone records finished snapshots. It runs once Kafka acknowledged
// their last row; should it fail, the next start takes them again.
func (c *CDC) snapshotDone(tables []string, point LSN, counts map[string]int64, since time.Time) {
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.state.markDone(ctx, tables, point, counts, since); err != nil {
			c.log.Error("recording a finished snapshot failed; it will be taken again", "tables", tables, "err", err)
			return
		}
		c.log.Info("snapshot acknowledged", "tables", tables, "point", point.String())
	}()
}

// snapshotRelation describes a table as the snapshot sees it, with the
// columns the publication sends and the key chosen as the stream chooses it.
// It returns nil when the table is gone or not published.
func (s *session) snapshotRelation(conn *pgx.Conn, table string) (*relation, error) {
	schema, name, err := splitTable(table)
	if err != nil {
		return nil, err
	}
	var oid uint32
	var ident string
	var attnames []string
	err = conn.QueryRow(s.ctx, `SELECT c.oid, c.relreplident::text, pt.attnames::text[]
		FROM pg_publication_tables pt
		JOIN pg_namespace n ON n.nspname = pt.schemaname
		JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
		WHERE pt.pubname = $1 AND pt.schemaname = $2 AND pt.tablename = $3`, s.c.cfg.CDCPublication, schema, name).Scan(&oid, &ident, &attnames)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", table, err)
	}
	published := map[string]bool{}
	for _, a := range attnames {
		published[a] = true
	}
	keys, err := primaryKey(s.ctx, conn, oid, ident[0])
	if err != nil {
		return nil, fmt.Errorf("key of %s: %w", table, err)
	}
	isKey := map[string]bool{}
	for _, k := range keys {
		isKey[k] = true
	}
	rows, err := conn.Query(s.ctx, `SELECT a.attname::text, a.atttypid, t.typname::text
		FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, oid)
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	var defs []relColumnDef
	for rows.Next() {
		var d relColumnDef
		if err := rows.Scan(&d.Name, &d.TypeOID, &d.TypeName); err != nil {
			rows.Close()
			return nil, fmt.Errorf("columns of %s: %w", table, err)
		}
		if len(published) == 0 || published[d.Name] {
			d.Key = isKey[d.Name]
			defs = append(defs, d)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	if err := s.c.ensureTopics(s.ctx, table); err != nil {
		return nil, err
	}
	topic := s.c.cfg.Topic(schemas.CDCTopic(schema, name))
	return newRelation(oid, schema, name, topic, defs, s.c.metrics.rows(table)), nil
}

// copyTable emits every row of rel as op r. Rows are read as text: the
// same rendering pgoutput uses, under the same session settings.
func (s *session) copyTable(conn *pgx.Conn, rel *relation, point LSN, tail []byte) (int64, error) {
	cols := make([]string, len(rel.cols))
	for i, c := range rel.cols {
		cols[i] = quoteIdent(c.name)
	}
	sql := "SELECT " + strings.Join(cols, ", ") + " FROM ONLY " + qualified(rel.schema, rel.table)
	if len(cols) == 0 {
		return 0, nil
	}
	rr := conn.PgConn().ExecParams(s.ctx, sql, nil, nil, nil, nil)
	tuple := make([]tupleCol, len(rel.cols))
	var n int64
	for rr.NextRow() {
		for i, v := range rr.Values() {
			if v == nil {
				tuple[i] = tupleCol{Kind: colNull}
			} else {
				tuple[i] = tupleCol{Kind: colText, Data: v}
			}
		}
		rec, err := s.enc.encode(rel, schemas.OpRead, point, tail, tuple, nil, false, tuple)
		if err != nil {
			_, _ = rr.Close()
			return n, err
		}
		s.chunk = append(s.chunk, item{rec: rec})
		n++
		if len(s.chunk) >= chunkItems {
			if err := s.flush(); err != nil {
				_, _ = rr.Close()
				return n, err
			}
		}
	}
	if _, err := rr.Close(); err != nil {
		return n, err
	}
	return n, s.flush()
}

// primaryKey returns the key columns of a table, chosen like the stream's:
// the replica identity index for identity 'i', else the primary key.
func primaryKey(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, oid uint32, ident byte) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT a.attname::text
		FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = $1 AND CASE WHEN $2 = 'i' THEN i.indisreplident ELSE i.indisprimary END`, oid, string(ident))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
