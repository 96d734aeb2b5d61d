package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/migrate"
	"github.com/launchready/launchready/schemas"
)

// session is one replication connection's life: set-up, optional initial
// snapshot, streaming, and the drain at its end. The reader (read, in
// reader.go) runs on the session's goroutine; the pipeline's goroutines write
// to Kafka; the status loop reports the acknowledged position to Postgres on
// its own clock, so a slow Kafka never makes the server time the stream out.
type session struct {
	c    *CDC
	ctx  context.Context
	log  *slog.Logger
	conn *pgconn.PgConn
	// netConn is conn's socket: the status loop writes standby status updates
	// on it while the reader reads (a socket allows one of each at a time).
	netConn net.Conn

	tracker *tracker
	pipe    *pipeline
	stop    chan struct{} // closed when the reader must stop
	stopped atomic.Bool

	rels           map[uint32]*relation
	dec            changeDecoder
	enc            encoder
	inTxn          bool
	tail           []byte // source tail of the current transaction
	chunk          []item
	lastCheckpoint LSN

	received    atomic.Uint64 // highest WAL position received
	lastMessage atomic.Int64  // unix nanoseconds of the last WAL data message
	reply       chan struct{} // the server asked for a status update
	statusMu    sync.Mutex

	wantSnapshot bool
	job          *snapshotJob // prepared, waiting for the stream to reach its point
}

// chunkItems is how many items the reader collects before handing them over
// inside a large transaction (it always hands over at a commit).
const chunkItems = 256

// preflight is what a session learns before it connects for replication:
// the server and publication are usable, the published tables, the slot,
// and the snapshots done and owed. A missing slot gets every table owed.
type preflight struct {
	published     []string
	slot          slotInfo
	done, pending []string
}

func (c *CDC) preflight(ctx context.Context) (preflight, error) {
	var pf preflight
	slot, pub := c.cfg.CDCSlot, c.cfg.CDCPublication
	if err := checkServer(ctx, c.app); err != nil {
		return pf, err
	}
	published, err := ensurePublication(ctx, c.app, pub, c.tables)
	if err != nil {
		return pf, err
	}
	pf.published = published
	if len(published) == 0 {
		c.log.WarnContext(ctx, "the publication has no tables: nothing to stream", "publication", pub)
	}
	if err := c.ensureTopics(ctx, published...); err != nil {
		return pf, err
	}
	if !c.requestedAtStart && len(c.opt.SnapshotTables) > 0 {
		if _, err := c.recordRequest(ctx, c.state, published, c.opt.SnapshotTables); err != nil {
			return pf, err
		}
		c.requestedAtStart = true
	}
	if err := c.loadTypes(ctx); err != nil {
		return pf, err
	}
	var database string
	if err := c.app.QueryRow(ctx, `SELECT current_database()`).Scan(&database); err != nil {
		return pf, fmt.Errorf("app database: %w", err)
	}
	if pf.slot, err = waitSlotIdle(ctx, c.app, slot, c.opt.SlotBusyWait); err != nil {
		return pf, err
	}
	if err := checkSlot(pf.slot, slot, database); err != nil {
		return pf, err
	}
	if pf.done, pf.pending, err = c.state.load(ctx); err != nil {
		return pf, err
	}
	if !pf.slot.Exists {
		if len(pf.done) > 0 {
			if !c.opt.Resnapshot {
				return pf, lostSlotError(slot)
			}
			c.log.WarnContext(ctx, "the replication slot vanished: creating it again and snapshotting every table", "tables", published)
		}
		// Owed before the slot exists: a crash from here on leaves the
		// snapshots pending, and the next start takes them.
		if err := c.state.reset(ctx); err != nil {
			return pf, err
		}
		if err := c.state.request(ctx, published); err != nil {
			return pf, err
		}
		pf.done, pf.pending = nil, published
	}
	return pf, nil
}

func (c *CDC) session(ctx context.Context) error {
	c.metrics.sessions.Inc()
	slot, pub := c.cfg.CDCSlot, c.cfg.CDCPublication
	pf, err := c.preflight(ctx)
	if err != nil {
		return err
	}
	si, published, done, pending := pf.slot, pf.published, pf.done, pf.pending

	conn, err := connectReplication(ctx, c.cfg.PostgresURL, c.opt.ReplicationParams)
	if err != nil {
		return classifyConnectError(err)
	}
	s := &session{
		c: c, ctx: ctx, log: c.log, conn: conn, netConn: conn.Conn(),
		tracker: &tracker{},
		stop:    make(chan struct{}),
		rels:    map[uint32]*relation{},
		reply:   make(chan struct{}, 1),
		chunk:   newChunk(),
	}
	s.lastMessage.Store(time.Now().UnixNano())
	s.tracker.onAdvance = func(l LSN) { c.metrics.acked.Set(float64(l)) }
	pc := c.opt.pipeline
	pc.Shards = c.opt.Shards
	s.pipe = newPipeline(ctx, c.log, c.writers, s.tracker, c.metrics, pc)
	defer func() {
		if s.job != nil {
			s.job.close()
		}
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()

	start := si.Confirmed
	if !si.Exists {
		at, err := c.dbNow(ctx)
		if err != nil {
			s.pipe.close()
			_ = s.pipe.wait(time.Second)
			return err
		}
		created, err := createSlot(ctx, conn, slot, false)
		if err != nil {
			s.pipe.close()
			_ = s.pipe.wait(time.Second)
			return fmt.Errorf("create replication slot %q: %w", slot, err)
		}
		start = created.ConsistentPoint
		c.log.InfoContext(ctx, "replication slot created; snapshotting", "consistent_point", start.String(), "tables", published)
		s.tracker.start(start)
		s.lastCheckpoint = start
		job, err := s.importJob(created, at)
		if err == nil && job != nil {
			err = s.inject(job)
		}
		if err != nil {
			s.pipe.close()
			_ = s.pipe.wait(time.Second)
			return err
		}
	} else {
		s.tracker.start(start)
		s.lastCheckpoint = start
		s.wantSnapshot = len(pending) > 0
		var never []string
		for _, t := range published {
			if !slices.Contains(done, t) && !slices.Contains(pending, t) {
				never = append(never, t)
			}
		}
		if len(never) > 0 {
			c.log.WarnContext(ctx, "published tables were never snapshotted: only their changes are streamed; request a snapshot with POST /cdc/snapshot?table=…", "tables", never)
		}
	}
	c.metrics.acked.Set(float64(start))

	if err := startReplication(ctx, conn, slot, pub, start); err != nil {
		s.pipe.close()
		_ = s.pipe.wait(c.cfg.ShutdownTimeout)
		return fmt.Errorf("start replication: %w", err)
	}
	c.setState(true, nil)
	c.measureLag(ctx)
	c.log.InfoContext(ctx, "streaming", "from", start.String(), "publication", pub)
	if s.wantSnapshot {
		_ = c.heartbeat(ctx) // a message to read, so the owed snapshot starts now
	}
	return s.run()
}

// run streams until the context ends or something fails, then drains.
func (s *session) run() error {
	statusDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.statusLoop(statusDone) }()
	readerDone := make(chan struct{})
	go func() {
		defer wg.Done()
		select {
		case <-s.ctx.Done():
		case <-s.pipe.failed():
		case <-readerDone:
		}
		s.stopReading()
	}()

	readErr := s.read()
	close(readerDone)
	if readErr != nil {
		s.stopReading()
	}
	// Records of a transaction cut short carry no checkpoint: sending them
	// would be harmless, but they will be read again anyway.
	s.chunk = nil
	s.pipe.close()
	pipeErr := s.pipe.wait(s.c.cfg.ShutdownTimeout)
	if err := s.sendStatus(); err != nil && readErr == nil && s.ctx.Err() == nil {
		readErr = err
	}
	close(statusDone)
	wg.Wait()
	s.log.Info("replication session ended", "confirmed", s.tracker.confirmed().String())
	if s.ctx.Err() != nil {
		return nil
	}
	if readErr != nil {
		return readErr
	}
	if pipeErr != nil {
		return pipeErr
	}
	return errors.New("replication stream stopped")
}

// stopReading makes a blocked or future receive return at once.
func (s *session) stopReading() {
	if s.stopped.CompareAndSwap(false, true) {
		close(s.stop)
		_ = s.netConn.SetReadDeadline(time.Now())
	}
}

// statusLoop reports the acknowledged position every StatusInterval, and
// at once when the server asks.
func (s *session) statusLoop(done <-chan struct{}) {
	t := time.NewTicker(s.c.opt.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		case <-s.reply:
		}
		if err := s.sendStatus(); err != nil {
			s.log.Warn("standby status update failed", "err", err)
		}
		since := time.Since(time.Unix(0, s.lastMessage.Load()))
		s.c.metrics.sinceMessage.Set(since.Seconds())
	}
}

// sendStatus tells the server what Kafka acknowledged: the flush position
// is the tracker's, which never passes an unacknowledged change.
func (s *session) sendStatus() error {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	flush := s.tracker.confirmed()
	write := max(LSN(s.received.Load()), flush)
	_ = s.netConn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := s.netConn.Write(standbyStatus(write, flush, time.Now(), false))
	s.c.metrics.acked.Set(float64(flush))
	return err
}

func (s *session) noteReceived(l LSN) {
	for {
		cur := s.received.Load()
		if uint64(l) <= cur || s.received.CompareAndSwap(cur, uint64(l)) {
			return
		}
	}
}

// flush hands the collected items to the pipeline, which owns them from
// then on (and recycles the slice).
func (s *session) flush() error {
	if len(s.chunk) == 0 {
		return nil
	}
	err := s.pipe.send(s.chunk, s.stop)
	s.chunk = newChunk()
	return err
}

var chunkPool = sync.Pool{New: func() any { c := make([]item, 0, chunkItems); return &c }}

func newChunk() []item { return (*chunkPool.Get().(*[]item))[:0] }

func recycleChunk(c []item) {
	if cap(c) < chunkItems || cap(c) > 4*chunkItems {
		return
	}
	clear(c)
	c = c[:0]
	chunkPool.Put(&c)
}

// checkpoint records pos as confirmable once everything before it is
// acknowledged. Positions only move forward.
func (s *session) checkpoint(pos LSN) {
	if pos > s.lastCheckpoint {
		s.chunk = append(s.chunk, item{checkpoint: pos})
		s.lastCheckpoint = pos
	}
}

// ensureTopics creates the CDC topics of tables (schema.table) that this
// process has not created yet.
func (c *CDC) ensureTopics(ctx context.Context, tables ...string) error {
	var specs []string
	c.mu.Lock()
	for _, t := range tables {
		if !c.topics[t] {
			specs = append(specs, t)
		}
	}
	c.mu.Unlock()
	if len(specs) == 0 {
		return nil
	}
	var topics []kafka.TopicSpec
	for _, t := range specs {
		schema, table, err := splitTable(t)
		if err != nil {
			return err
		}
		topics = append(topics, topicSpec(c.cfg, schema, table))
	}
	if err := c.kafka.EnsureTopics(ctx, topics); err != nil {
		return fmt.Errorf("create the CDC topics of %v: %w", specs, err)
	}
	c.mu.Lock()
	for _, t := range specs {
		c.topics[t] = true
	}
	c.mu.Unlock()
	return nil
}

// topicSpec is the spec of a table's CDC topic. Its max.message.bytes
// admits the largest produce batch the Kafka writer forms (16 MiB), above the
// broker's 1 MiB default: a big batch must not bounce.
func topicSpec(cfg *config.Config, schema, table string) kafka.TopicSpec {
	spec := migrate.TopicSpec(cfg, schemas.Topic{Name: schemas.CDCTopic(schema, table), Retention: 30 * 24 * time.Hour, Envelope: "Change"})
	spec.Configs["max.message.bytes"] = strconv.Itoa(20 << 20)
	return spec
}

// loadTypes reads the names of every type, for the columns' "type".
func (c *CDC) loadTypes(ctx context.Context) error {
	rows, err := c.app.Query(ctx, `SELECT oid, typname::text FROM pg_type`)
	if err != nil {
		return fmt.Errorf("app database: read types: %w", err)
	}
	defer rows.Close()
	types := map[uint32]string{}
	for rows.Next() {
		var oid uint32
		var name string
		if err := rows.Scan(&oid, &name); err != nil {
			return fmt.Errorf("app database: read types: %w", err)
		}
		types[oid] = name
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("app database: read types: %w", err)
	}
	c.mu.Lock()
	c.types = types
	c.mu.Unlock()
	return nil
}

func (c *CDC) typeName(ctx context.Context, oid uint32) string {
	c.mu.Lock()
	name, ok := c.types[oid]
	c.mu.Unlock()
	if ok {
		return name
	}
	if err := c.app.QueryRow(ctx, `SELECT typname::text FROM pg_type WHERE oid = $1`, oid).Scan(&name); err != nil {
		return fmt.Sprintf("oid:%d", oid)
	}
	c.setTypeName(oid, name)
	return name
}

func (c *CDC) setTypeName(oid uint32, name string) {
	c.mu.Lock()
	c.types[oid] = name
	c.mu.Unlock()
}

// classifyConnectError turns refusals that need an administrator into
// setup errors.
func classifyConnectError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28000", "28P01":
			return setupErrorf("the app database refused the replication connection (%s): allow replication connections for this user in pg_hba.conf", pgErr.Message)
		case "42501":
			return setupErrorf("the app database refused the replication connection (%s): run ALTER ROLE … WITH REPLICATION; as a superuser", pgErr.Message)
		case "53300":
			return setupErrorf("the app database has no replication connection left (%s): raise max_wal_senders", pgErr.Message)
		}
	}
	return err
}
