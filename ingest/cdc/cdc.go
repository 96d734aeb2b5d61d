// Package cdc streams the app database's row changes into Kafka by logical
// replication (pgoutput), one topic per table (lr.cdc.<schema>.<table>),
// keyed by the JSON of the primary key, as schemas.Change records.
//
// On first start it creates the publication and the slot, copies the
// published tables in the snapshot exported by the slot's creation (op r),
// then streams from the slot's consistent point, so nothing is missed or
// doubled at the boundary. The flush position sent to Postgres only ever
// covers changes Kafka acknowledged; a restart (even after kill -9) resumes
// from it, so every change reaches Kafka at least once, and a repeated change
// carries the same LSN. A heartbeat message keeps the slot advancing while
// the published tables are idle.
//
// For consumers: delivery is at least once, and a restart writes again what
// followed the last confirmed position. Apply a key's records in WAL order
// and skip what is not newer than what was applied: order by
// source.commit_lsn, then a snapshot row before a change at the same
// position, then source.lsn. Records of a snapshot share one LSN (the
// snapshot's point), so a record's identity is its table, key, op and LSN.
//
// Operations:
//   - a table added to the publication later is copied on request:
//     POST /cdc/snapshot?table=schema.table (bearer LR_OPS_TOKEN), or
//     `launchready cdc --snapshot-table schema.table`;
//   - a snapshot cut short (crash, Kafka down) is taken again on the next
//     start, at a consistent point of the stream;
//   - if the slot vanishes after tables were copied through it, the stage
//     refuses to start (changes were lost) until run with --resnapshot;
//   - TRUNCATE is not streamed (a publication created here does not publish
//     it); one received is logged and counted.
package cdc

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/pg"
)

// Options tune the stage; the zero value is the production default.
type Options struct {
	// HeartbeatInterval is how often a logical message is written to the WAL
	// so the slot advances while the published tables are idle (10s).
	HeartbeatInterval time.Duration
	// StatusInterval is how often the acknowledged position is reported to
	// Postgres, whatever Kafka is doing (1s).
	StatusInterval time.Duration
	// LagInterval is how often the slot's lag is measured (5s).
	LagInterval time.Duration
	// SlotBusyWait is how long to wait for another process to release the
	// slot before giving up (10s).
	SlotBusyWait time.Duration
	// Resnapshot allows creating the slot again when it vanished after tables
	// had been snapshotted through it; every table is then copied anew.
	Resnapshot bool
	// SnapshotTables are snapshotted again on start (schema.table).
	SnapshotTables []string
	// Shards is the number of concurrent Kafka writers, each with a
	// producer of its own (4).
	Shards int
	// Writer replaces the Kafka producer (tests).
	Writer Writer
	// ReplicationParams are extra startup parameters of the replication
	// connection, e.g. wal_sender_timeout.
	ReplicationParams map[string]string
	// MaxBackoff caps the wait between replication sessions after errors (30s).
	MaxBackoff time.Duration

	pipeline pipelineConfig // batching and budget; Shards overrides its Shards
}

func (o *Options) defaults() {
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 10 * time.Second
	}
	if o.StatusInterval <= 0 {
		o.StatusInterval = time.Second
	}
	if o.LagInterval <= 0 {
		o.LagInterval = 5 * time.Second
	}
	if o.SlotBusyWait <= 0 {
		o.SlotBusyWait = 10 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Shards <= 0 {
		o.Shards = 4
	}
}

// CDC is the stage.
type CDC struct {
	cfg     *config.Config
	log     *slog.Logger
	opt     Options
	tables  []string // configured, as schema.table
	metrics *slotMetrics
	writers []Writer
	kafka   *kafka.Client

	snapReq chan struct{}  // a snapshot was requested
	bg      sync.WaitGroup // state writes still running

	requestedAtStart bool // Options.SnapshotTables were recorded

	mu        sync.Mutex
	app       *pgxpool.Pool
	state     *snapshotState
	streaming bool
	lastErr   error
	ran       bool
	types     map[uint32]string
	topics    map[string]bool
}

// New validates the settings, registers the readiness check and the
// snapshot-request route (POST /cdc/snapshot?table=schema.table), and
// returns the stage. It does not connect; Run does.
func New(env *app.Env, opt Options) (*CDC, error) {
	opt.defaults()
	cfg := env.Cfg
	if !slotName.MatchString(cfg.CDCSlot) {
		return nil, fmt.Errorf("LR_CDC_SLOT: %q is not a valid slot name (1-63 of a-z, 0-9, _)", cfg.CDCSlot)
	}
	if cfg.CDCPublication == "" {
		return nil, errors.New("LR_CDC_PUBLICATION: is empty")
	}
	c := &CDC{
		cfg:     cfg,
		log:     obs.Component(env.Log, "cdc").With("slot", cfg.CDCSlot),
		opt:     opt,
		metrics: newSlotMetrics(cfg.CDCSlot),
		kafka:   kafka.NewClient(cfg.KafkaBrokers),
		snapReq: make(chan struct{}, 1),
		types:   map[uint32]string{},
		topics:  map[string]bool{},
	}
	if opt.Writer != nil {
		c.writers = []Writer{opt.Writer}
	}
	for _, t := range cfg.CDCTables {
		s, tb, err := splitTable(t)
		if err != nil {
			return nil, fmt.Errorf("LR_CDC_TABLES: %w", err)
		}
		if name := s + "." + tb; !slices.Contains(c.tables, name) {
			c.tables = append(c.tables, name)
		}
	}
	for _, t := range opt.SnapshotTables {
		if _, _, err := splitTable(t); err != nil {
			return nil, fmt.Errorf("snapshot table: %w", err)
		}
	}
	if env.Health != nil {
		env.Health.Add("cdc:"+cfg.CDCSlot, c.ready)
	}
	if env.Mux != nil {
		env.Mux.HandleFunc("POST /cdc/snapshot", c.handleSnapshot)
	}
	return c, nil
}

// Name is the stage's component name.
func (c *CDC) Name() string { return "cdc" }

// Run streams until ctx ends, then drains what Kafka still has to
// acknowledge, confirms it to Postgres and returns nil. A session that fails
// is started again after a backoff; an error that needs a change of settings
// or of the database (ErrSetup) is returned at once. Run is called once.
func (c *CDC) Run(ctx context.Context) error {
	if err := c.connect(ctx); err != nil {
		return err
	}
	defer c.close()
	defer c.bg.Wait()
	if len(c.writers) == 0 {
		// A producer per shard: Kafka keeps one request in flight per
		// partition and producer.
		for i := 0; i < c.opt.Shards; i++ {
			p := kafka.NewProducer(c.cfg.KafkaBrokers, kafka.WriterOptions{})
			defer p.Close()
			c.writers = append(c.writers, p)
		}
	}
	var bg sync.WaitGroup
	bgCtx, stopBG := context.WithCancel(ctx)
	bg.Add(1)
	go func() { defer bg.Done(); c.background(bgCtx) }()
	defer func() { stopBG(); bg.Wait() }()

	backoff := time.Second
	for {
		started := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		c.setState(false, err)
		if errors.Is(err, ErrSetup) {
			c.log.ErrorContext(ctx, "cdc cannot start", "err", err)
			return err
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		c.log.ErrorContext(ctx, "replication session ended; starting a new one", "err", err, "in", backoff.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.opt.MaxBackoff)
	}
}

func (c *CDC) connect(ctx context.Context) error {
	appPool, err := pg.Connect(ctx, c.cfg.PostgresURL, "app database")
	if err != nil {
		return err
	}
	statePool, err := pg.Connect(ctx, c.cfg.StatePostgresURL, "state database")
	if err != nil {
		appPool.Close()
		return err
	}
	c.mu.Lock()
	c.app, c.state = appPool, &snapshotState{pool: statePool, slot: c.cfg.CDCSlot}
	c.ran = true
	c.mu.Unlock()
	return nil
}

func (c *CDC) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.streaming = false
	c.lastErr = errors.New("stopped")
	c.app.Close()
	c.state.pool.Close()
}

func (c *CDC) setState(streaming bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.streaming, c.lastErr = streaming, err
}

// ready is the readiness check: the slot exists and a session streams.
func (c *CDC) ready(ctx context.Context) error {
	c.mu.Lock()
	pool, streaming, lastErr, ran := c.app, c.streaming, c.lastErr, c.ran
	c.mu.Unlock()
	if !ran || pool == nil {
		return errors.New("not started")
	}
	si, err := readSlot(ctx, pool, c.cfg.CDCSlot)
	if err != nil {
		return err
	}
	if !si.Exists {
		return fmt.Errorf("replication slot %q does not exist", c.cfg.CDCSlot)
	}
	if !streaming {
		if lastErr != nil {
			return fmt.Errorf("not streaming: %w", lastErr)
		}
		return errors.New("not streaming yet")
	}
	return nil
}

// background writes heartbeats and measures the slot's lag.
func (c *CDC) background(ctx context.Context) {
	hb := time.NewTicker(c.opt.HeartbeatInterval)
	defer hb.Stop()
	lag := time.NewTicker(c.opt.LagInterval)
	defer lag.Stop()
	c.measureLag(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			if err := c.heartbeat(ctx); err != nil && ctx.Err() == nil {
				c.log.WarnContext(ctx, "heartbeat failed", "err", err)
			}
		case <-lag.C:
			c.measureLag(ctx)
		}
	}
}

// heartbeatPrefix marks the stage's logical messages in the WAL.
const heartbeatPrefix = "launchready.heartbeat"

// heartbeat writes a non-transactional logical message: every slot decodes
// it, so ours receives a position past all idle WAL and can confirm it.
func (c *CDC) heartbeat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.app.Exec(ctx, `SELECT pg_logical_emit_message(false, $1, $2)`, heartbeatPrefix, c.cfg.CDCSlot)
	return err
}

func (c *CDC) measureLag(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var lag *int64
	err := c.app.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, c.cfg.CDCSlot).Scan(&lag)
	switch {
	case err == nil:
		c.metrics.slotExists.Set(1)
		if lag != nil {
			c.metrics.lag.Set(float64(*lag))
		}
	case errors.Is(err, pgx.ErrNoRows):
		c.metrics.slotExists.Set(0)
	default:
		if ctx.Err() == nil {
			c.log.WarnContext(ctx, "measuring slot lag failed", "err", err)
		}
	}
}

// RequestSnapshot asks for a fresh snapshot of published tables (schema.table):
// their rows are emitted as op r at a consistent point of the stream. It
// returns once the request is recorded; the snapshot follows while streaming.
func (c *CDC) RequestSnapshot(ctx context.Context, tables ...string) error {
	c.mu.Lock()
	pool, state := c.app, c.state
	c.mu.Unlock()
	if pool == nil {
		return errors.New("cdc is not running")
	}
	published, err := publishedTables(ctx, pool, c.cfg.CDCPublication)
	if err != nil {
		return err
	}
	names, err := c.recordRequest(ctx, state, published, tables)
	if err != nil {
		return err
	}
	select {
	case c.snapReq <- struct{}{}:
	default:
	}
	// Wake an idle stream so the reader notices the request.
	if err := c.heartbeat(ctx); err != nil {
		c.log.WarnContext(ctx, "heartbeat failed", "err", err)
	}
	c.log.InfoContext(ctx, "snapshot requested", "tables", names)
	return nil
}

// recordRequest checks that tables are published and records them as owed.
func (c *CDC) recordRequest(ctx context.Context, state *snapshotState, published, tables []string) ([]string, error) {
	var names []string
	for _, t := range tables {
		s, tb, err := splitTable(t)
		if err != nil {
			return nil, setupErrorf("%v", err)
		}
		name := s + "." + tb
		if !slices.Contains(published, name) {
			return nil, setupErrorf("table %s is not in publication %q: run ALTER PUBLICATION %s ADD TABLE %s; first", name, c.cfg.CDCPublication, quoteIdent(c.cfg.CDCPublication), quoteTable(name))
		}
		names = append(names, name)
	}
	return names, state.request(ctx, names)
}

// handleSnapshot serves POST /cdc/snapshot?table=schema.table (repeatable),
// behind the ops token.
func (c *CDC) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	tok := c.cfg.OpsToken
	if !tok.Set() {
		http.Error(w, "snapshot requests are disabled: set LR_OPS_TOKEN", http.StatusForbidden)
		return
	}
	want := "Bearer " + tok.Reveal()
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(want)) != 1 {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	tables := r.URL.Query()["table"]
	if len(tables) == 0 {
		http.Error(w, "name at least one table: ?table=schema.table", http.StatusBadRequest)
		return
	}
	if err := c.RequestSnapshot(r.Context(), tables...); err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, ErrSetup) {
			code = http.StatusBadRequest
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]any{"requested": tables})
}
