package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/sinks/audit"
)

func init() {
	register("audit", "write every topic to the ClickHouse audit trail; `audit timeline|stats|why` query it", runAudit)
	addStage("audit", func(ctx context.Context, d *deps) (app.Stage, error) {
		return audit.New(d.env, audit.Options{Redact: redactFields(os.Getenv("LR_AUDIT_REDACT_FIELDS")), Conn: d.ch})
	})
}

// redactFields parses a comma-separated redaction list; empty means the
// default list (audit.DefaultDrop).
func redactFields(list string) []string {
	var out []string
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

const auditUsage = `launchready audit                      run the audit writer (Kafka → ClickHouse)
launchready audit timeline --email E   a customer's story (or --customer ID)
launchready audit stats --since 24h    received/duplicate/rejected rates, mismatch rate, latency, sink results
launchready audit why --email E        why the customer has (no) access now (or --customer ID)
Queries print tables; --json prints JSON for scripts.`

func runAudit(ctx context.Context, args []string) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "timeline":
			return auditTimeline(ctx, args[1:])
		case "stats":
			return auditStats(ctx, args[1:])
		case "why":
			return auditWhy(ctx, args[1:])
		default:
			return fmt.Errorf("unknown audit query %q\n%s", args[0], auditUsage)
		}
	}
	return auditWriter(ctx, args)
}

func auditWriter(ctx context.Context, args []string) error {
	var (
		dropList string
		opt      audit.Options
	)
	defaultDrop := strings.Join(audit.DefaultDrop, ",")
	if v, ok := os.LookupEnv("LR_AUDIT_REDACT_FIELDS"); ok {
		defaultDrop = v
	}
	cfg, _, err := loadConfig("audit", args, config.NeedKafka|config.NeedClickHouse|config.NeedHTTP, func(fs *flag.FlagSet) {
		fs.StringVar(&dropList, "redact-fields", defaultDrop, "payload fields dropped before storage, comma-separated: a name at any depth, a glob (*_address) or a dotted path tail (billing_details.name); names marking secrets are always dropped ($LR_AUDIT_REDACT_FIELDS)")
		fs.IntVar(&opt.MaxBatch, "batch-size", 50000, "records per ClickHouse insert at most (memory: about twice their size)")
		fs.DurationVar(&opt.MaxWait, "batch-wait", 500*time.Millisecond, "longest wait to fill a batch")
		fs.DurationVar(&opt.TopicRefresh, "topic-refresh", 30*time.Second, "how often new lr.cdc.* topics are looked for")
		fs.Usage = func() { fmt.Fprintln(fs.Output(), auditUsage+"\n\nflags:"); fs.PrintDefaults() }
	})
	if err != nil {
		return err
	}
	opt.Redact = redactFields(dropList)
	log := newLogger(cfg)
	health := obs.NewHealth()
	env := &app.Env{Cfg: cfg, Log: log, Health: health, Mux: health.Mux()}
	w, err := audit.New(env, opt)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srvErr := make(chan error, 1)
	go func() { srvErr <- obs.Serve(ctx, log, cfg.HTTPAddr, env.Mux, cfg.ShutdownTimeout) }()
	err = w.Run(ctx)
	cancel()
	if serr := <-srvErr; serr != nil && err == nil {
		err = fmt.Errorf("http: %w", serr)
	}
	return err
}

// queryFlags are the flags the audit queries share.
type queryFlags struct {
	email, customer string
	json            bool
	since           time.Duration
	until           string
	limit           int
}

func (q *queryFlags) register(fs *flag.FlagSet, customer bool, since time.Duration) {
	if customer {
		fs.StringVar(&q.email, "email", "", "the customer's email")
		fs.StringVar(&q.customer, "customer", "", "the canonical customer id, or a Stripe/Kit/Circle id linked to it")
	}
	fs.BoolVar(&q.json, "json", false, "print JSON instead of a table")
	fs.DurationVar(&q.since, "since", since, "how far back to look (0: everything)")
	fs.StringVar(&q.until, "until", "", "end of the window, RFC 3339 (default now)")
}

func (q *queryFlags) window() (since, until time.Time, err error) {
	until = time.Now()
	if q.until != "" {
		if until, err = time.Parse(time.RFC3339, q.until); err != nil {
			return since, until, fmt.Errorf("--until: %w", err)
		}
	}
	if q.since > 0 {
		since = until.Add(-q.since)
	}
	return since, until, nil
}

// openAudit loads the settings of an audit query and connects to ClickHouse.
func openAudit(ctx context.Context, name string, args []string, q *queryFlags, extra func(*flag.FlagSet)) (*config.Config, audit.Querier, func(), error) {
	cfg, fs, err := loadConfig("audit "+name, args, config.NeedClickHouse, extra)
	if err != nil {
		return nil, nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, nil, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	newLogger(cfg)
	conn, err := chdb.Open(ctx, cfg, cfg.ClickHouseDatabase)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, conn, func() { conn.Close() }, nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func auditTimeline(ctx context.Context, args []string) error {
	var q queryFlags
	cfg, conn, done, err := openAudit(ctx, "timeline", args, &q, func(fs *flag.FlagSet) {
		q.register(fs, true, 0)
		fs.IntVar(&q.limit, "limit", 1000, "most recent entries to show")
	})
	if err != nil {
		return err
	}
	defer done()
	since, until, err := q.window()
	if err != nil {
		return err
	}
	if q.until == "" {
		until = time.Time{} // up to now, including what arrives while the query runs
	}
	res, err := audit.Timeline(ctx, conn, cfg.ClickHouseDatabase, audit.TimelineQuery{Email: q.email, Customer: q.customer, Since: since, Until: until, Limit: q.limit})
	if err != nil {
		return err
	}
	if q.json {
		return printJSON(res)
	}
	return audit.WriteTimeline(os.Stdout, res)
}

func auditStats(ctx context.Context, args []string) error {
	var q queryFlags
	cfg, conn, done, err := openAudit(ctx, "stats", args, &q, func(fs *flag.FlagSet) { q.register(fs, false, 24*time.Hour) })
	if err != nil {
		return err
	}
	defer done()
	since, until, err := q.window()
	if err != nil {
		return err
	}
	if since.IsZero() {
		return errors.New("--since must be a positive duration, e.g. 24h")
	}
	// Rejected webhooks are counted by ingest, in its own process; the CLI
	// has no RejectedCounter and reports them as unknown.
	res, err := audit.Stats(ctx, conn, cfg.ClickHouseDatabase, audit.StatsQuery{Since: since, Until: until})
	if err != nil {
		return err
	}
	if q.json {
		return printJSON(res)
	}
	return audit.WriteStats(os.Stdout, res)
}

func auditWhy(ctx context.Context, args []string) error {
	var q queryFlags
	cfg, conn, done, err := openAudit(ctx, "why", args, &q, func(fs *flag.FlagSet) {
		fs.StringVar(&q.email, "email", "", "the customer's email")
		fs.StringVar(&q.customer, "customer", "", "the canonical customer id, or a Stripe/Kit/Circle id linked to it")
		fs.BoolVar(&q.json, "json", false, "print JSON instead of text")
	})
	if err != nil {
		return err
	}
	defer done()
	a, err := audit.Why(ctx, conn, cfg.ClickHouseDatabase, audit.WhyQuery{Email: q.email, Customer: q.customer})
	if err != nil {
		return err
	}
	if q.json {
		return printJSON(a)
	}
	return audit.WriteWhy(os.Stdout, a)
}
