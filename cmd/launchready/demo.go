package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/launchready/launchready/internal/alerts"
	"github.com/launchready/launchready/internal/app"
	"github.com/launchready/launchready/internal/chdb"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/pg"
	circlesim "github.com/launchready/launchready/simulate/circle"
	kitsim "github.com/launchready/launchready/simulate/kit"
	"github.com/launchready/launchready/simulate/traffic"
	"github.com/launchready/launchready/sinks/audit"
)

func init() {
	register("demo", "run the whole pipeline with the Circle and Kit simulators on the local stack, play synthetic customers through it, print a report", runDemo)
}

type demoFlags struct {
	customers  int
	duplicates float64
	forged     float64
	timeout    time.Duration
	logFile    string
	stay       bool
	sinkWait   time.Duration
	seed       uint64
}

func runDemo(ctx context.Context, args []string) error {
	var f demoFlags
	cfg, _, err := loadConfig("demo", args, config.NeedKafka|config.NeedPostgres|config.NeedStatePostgres|config.NeedClickHouse|config.NeedHTTP, func(fs *flag.FlagSet) {
		fs.IntVar(&f.customers, "customers", 200, "synthetic customers to play")
		fs.Float64Var(&f.duplicates, "duplicates", 0.15, "fraction of Stripe events delivered twice")
		fs.Float64Var(&f.forged, "forged", 0.03, "fraction of Stripe events also sent once with a wrong signature")
		fs.DurationVar(&f.timeout, "timeout", 4*time.Minute, "how long to wait for the pipeline to converge")
		fs.StringVar(&f.logFile, "log-file", filepath.Join(".stack", "demo.log"), "where the pipeline's own log lines go")
		fs.DurationVar(&f.sinkWait, "sink-wait", 3*time.Minute, "how long to wait for the sinks to push every change to Circle and Kit")
		fs.BoolVar(&f.stay, "stay", false, "keep the pipeline and simulators running after the report (Ctrl-C stops)")
		fs.Uint64Var(&f.seed, "seed", uint64(time.Now().UnixNano()), "seed of the synthetic population")
	})
	if err != nil {
		return err
	}
	out := os.Stdout
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	m, err := mapping.Resolve(cfg.MappingFile)
	if err != nil {
		return err
	}
	runID := strconv.FormatInt(time.Now().Unix()%1_000_000_000, 36)
	demoSettings(cfg, runID)

	// The pipeline logs to a file; the terminal gets progress and the report.
	if err := os.MkdirAll(filepath.Dir(f.logFile), 0o755); err != nil {
		return err
	}
	lf, err := os.OpenFile(f.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer lf.Close()
	log := obs.NewLogger(lf, cfg.LogLevel)
	obs.SetDefault(log)

	// Simulators first: the sinks and the poller need their addresses.
	// Provider ids are never reused; each demo run's simulators hand out a
	// range of their own, so a warm stack's state never confuses two people.
	firstID := (time.Now().Unix()%10_000_000)*100_000 + 1
	groups, tags, fields := circlesim.Seed(m)
	circle := circlesim.New(circlesim.Options{Token: cfg.CircleAPIToken.Reveal(), AccessGroups: groups, MemberTags: tags, ProfileFields: fields, FirstID: firstID, Log: log})
	circleURL, err := circle.Start("127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("circle simulator: %w", err)
	}
	defer circle.Close()
	kitTags, kitFields := kitsim.Seed(m)
	kit := kitsim.New(kitsim.Options{APIKey: cfg.KitAPIKey.Reveal(), Tags: kitTags, Fields: kitFields, FirstID: firstID,
		WebhookURL: "http://" + cfg.HTTPAddr + "/webhooks/kit", WebhookSecret: cfg.KitWebhookSecret.Reveal(),
		WebhookRetries: []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second}, Log: log})
	kitURL, err := kit.Start("127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("kit simulator: %w", err)
	}
	defer kit.Close()
	cfg.CircleBaseURL = strings.TrimRight(circleURL, "/") + circlesim.Base
	cfg.KitBaseURL = strings.TrimRight(kitURL, "/") + "/v4"
	say("launchready demo: %d customers, %.0f%% duplicate deliveries, out-of-order delivery", f.customers, f.duplicates*100)
	say("  simulators: Circle %s, Kit %s", cfg.CircleBaseURL, cfg.KitBaseURL)
	say("  pipeline log: %s; topics: %s*", f.logFile, cfg.TopicPrefix)

	demoDatabases(ctx, cfg, runID, say)
	appDB, err := pg.Connect(ctx, cfg.PostgresURL, "app database")
	if err != nil {
		return err
	}
	defer appDB.Close()
	if err := traffic.EnsureAppSchema(ctx, appDB); err != nil {
		return err
	}

	d, closeDeps, err := openDeps(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeDeps()
	var running []app.Stage
	for _, sf := range stages {
		s, err := sf.make(ctx, d)
		if err != nil {
			return fmt.Errorf("%s: %w", sf.name, err)
		}
		if s != nil {
			running = append(running, s)
		}
	}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	pipeDone := make(chan error, 1)
	go func() { pipeDone <- serveStages(pctx, log, cfg, d.env.Mux, running) }()
	started := time.Now()
	base := "http://" + cfg.HTTPAddr
	if err := waitReady(ctx, base, 60*time.Second, pipeDone); err != nil {
		return err
	}
	say("  pipeline: %d stages running, HTTP on %s", len(running), base)

	prices := map[string]string{}
	for _, p := range m.Plans {
		if len(p.Prices) > 0 {
			prices[p.Name] = p.Prices[0]
		}
	}
	customers := traffic.Generate(traffic.Population{N: f.customers, Seed: f.seed, RunID: runID, Now: time.Now(), Prices: prices})
	var leadTags []int64
	for _, t := range m.Kit.LeadTags {
		leadTags = append(leadTags, t.ID)
	}
	start := time.Now()
	rep, err := traffic.Drive(ctx, traffic.Options{
		WebhookBase: base, StripeSecret: cfg.StripeWebhookSecret.Reveal(), App: appDB, Kit: kit, Circle: circle,
		LeadTags: leadTags, Duplicates: f.duplicates, Forged: f.forged, OutOfOrder: true, Seed: f.seed, Log: log,
		Progress: progress(out, "traffic", f.customers),
	}, customers)
	if err != nil {
		return fmt.Errorf("traffic: %w", err)
	}
	fmt.Fprintln(out)
	say("  traffic done in %s: %d webhooks (%d duplicate deliveries, %d retries after an error), p50 %.1f ms, p95 %.1f ms",
		rep.Elapsed.Round(time.Millisecond), rep.Webhooks, rep.Duplicates, rep.Retries, rep.P50MS, rep.P95MS)

	outcome, err := traffic.WaitConverged(ctx, cfg, customers, f.timeout, func(o *traffic.Outcome) {
		fmt.Fprintf(out, "\r  converging: %d/%d customers match their true state   ", o.Matched, o.Customers)
	})
	fmt.Fprintln(out)
	if err != nil {
		return err
	}
	converged := time.Since(start)
	// Let the sinks finish pushing: Kit's 120 requests a minute is the bound.
	backlog := waitSinks(ctx, out, cfg, kit, circle, 5*time.Second, f.sinkWait)
	printReport(ctx, out, d, cfg, customers, outcome, rep, kit, circle, converged, started)
	if backlog > 0 {
		say("  the sinks still had %d entitlement changes queued after %s (Kit allows 120 requests a minute); they keep going while the pipeline runs", backlog, f.sinkWait)
	}

	if f.stay {
		say("\nthe pipeline keeps running; Ctrl-C stops it")
		<-ctx.Done()
	}
	stop()
	if err := <-pipeDone; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if !outcome.OK() {
		return fmt.Errorf("%d of %d customers did not reach their true state", outcome.Customers-outcome.Matched, outcome.Customers)
	}
	return nil
}

// demoSettings fills what the demo needs and the user did not set: local
// secrets for the simulators, a quick Circle poll, the app tables for CDC,
// and topics and a ClickHouse database of the run's own (with the app
// database of demoDatabases), so each run's report, state and sink backlog
// are its own on a warm stack.
func demoSettings(cfg *config.Config, runID string) {
	if cfg.TopicPrefix == "lr." {
		cfg.TopicPrefix = "lr.demo" + runID + "."
	}
	if cfg.ClickHouseDatabase == "launchready" {
		cfg.ClickHouseDatabase = demoAuditPrefix + runID
	}
	def := func(s *config.Secret, v string) {
		if !s.Set() {
			*s = config.Secret(v)
		}
	}
	def(&cfg.StripeWebhookSecret, "whsec_demo"+randHex(12))
	def(&cfg.KitWebhookSecret, "kitsecret_demo"+randHex(12))
	def(&cfg.CirclePushSecret, "circlepush_demo"+randHex(12))
	def(&cfg.CircleAPIToken, "circle-demo-"+randHex(8))
	def(&cfg.KitAPIKey, "kit-demo-"+randHex(8))
	def(&cfg.OpsToken, "ops-demo-"+randHex(8))
	for _, s := range []config.Secret{cfg.StripeWebhookSecret, cfg.KitWebhookSecret, cfg.CirclePushSecret, cfg.CircleAPIToken, cfg.KitAPIKey, cfg.OpsToken} {
		config.RegisterSecret(s)
	}
	if cfg.CirclePollInterval > 5*time.Second || cfg.CirclePollInterval <= 0 {
		cfg.CirclePollInterval = 2 * time.Second
	}
	// The simulator has no monthly quota; a real plan's would stretch the
	// poll interval to minutes.
	if cfg.CircleMonthlyQuota < 10_000_000 {
		cfg.CircleMonthlyQuota = 10_000_000
	}
	if len(cfg.CDCTables) == 0 {
		cfg.CDCTables = []string{"public.users", "public.chat_sessions"}
	}
}

// The demo's own databases: an app database (Postgres) and an audit
// database (ClickHouse) per run, named with these prefixes and the run id.
const (
	demoAppPrefix   = "lr_demo_app_"
	demoAuditPrefix = "launchready_demo_"
)

// demoDatabases gives the run an app database of its own on the server
// LR_POSTGRES_URL points at (the CDC snapshot then holds only this run's
// users), and drops the app and audit databases earlier demo runs made: the
// latest run's stay for exploring. Without the right to create a database
// the run uses LR_POSTGRES_URL's own and says so.
func demoDatabases(ctx context.Context, cfg *config.Config, runID string, say func(string, ...any)) {
	if dropped, err := pg.DropDatabases(ctx, cfg.PostgresURL, demoAppPrefix, ""); err != nil {
		say("  note: earlier demo app databases not dropped: %v", err)
	} else if len(dropped) > 0 {
		say("  dropped %d app database(s) of earlier demo runs", len(dropped))
	}
	if strings.HasPrefix(cfg.ClickHouseDatabase, demoAuditPrefix) {
		if err := dropAuditDatabases(ctx, cfg, demoAuditPrefix, cfg.ClickHouseDatabase); err != nil {
			say("  note: earlier demo audit databases not dropped: %v", err)
		}
	}
	u, err := pg.CreateDatabase(ctx, cfg.PostgresURL, demoAppPrefix+runID)
	if err != nil {
		say("  note: using the configured app database (%v)", err)
		return
	}
	cfg.PostgresURL = u
	// The slot lives in that database and goes with it.
	if cfg.CDCSlot == "launchready" && cfg.CDCPublication == "launchready" {
		cfg.CDCSlot, cfg.CDCPublication = demoAppPrefix+runID, demoAppPrefix+runID
	}
}

// dropAuditDatabases drops the ClickHouse databases named prefix… but keep.
func dropAuditDatabases(ctx context.Context, cfg *config.Config, prefix, keep string) error {
	conn, err := chdb.Open(ctx, cfg, "")
	if err != nil {
		return err
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, "SELECT name FROM system.databases WHERE startsWith(name, ?) AND name != ?", prefix, keep)
	if err != nil {
		return err
	}
	var old []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		old = append(old, n)
	}
	rows.Close()
	for _, n := range old {
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+n); err != nil {
			return err
		}
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func waitReady(ctx context.Context, base string, limit time.Duration, failed <-chan error) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case err := <-failed:
			return fmt.Errorf("the pipeline stopped while starting: %v", err)
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the pipeline at %s was not ready within %s (see the log file)", base, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitSinks waits until the sinks' consumer groups have no backlog and the
// simulators saw no write for quiet, or limit passes, showing progress. Kit's
// 120 requests a minute is what bounds it.
func waitSinks(ctx context.Context, w io.Writer, cfg *config.Config, kit *kitsim.Server, circle *circlesim.Server, quiet, limit time.Duration) (backlog int64) {
	deadline := time.Now().Add(limit)
	bl := alerts.NewKafkaBacklog(cfg.KafkaBrokers, cfg.TopicPrefix)
	last := -1
	since := time.Now()
	defer fmt.Fprintln(w)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		backlog = 0
		if groups, err := bl.Backlog(ctx); err == nil {
			for g, n := range groups {
				if strings.Contains(g, "sink") {
					backlog += n
				}
			}
		}
		ks, cs := kit.Stats(), circle.Stats()
		fmt.Fprintf(w, "\r  sinks pushing: %d entitlement changes queued; Kit %d writes, Circle %d writes   ", backlog, ks.Writes, cs.Writes)
		if n := ks.Writes + cs.Writes; n != last {
			last, since = n, time.Now()
		} else if backlog == 0 && time.Since(since) >= quiet {
			return 0
		}
		time.Sleep(time.Second)
	}
	return backlog
}

func progress(w io.Writer, what string, total int) func(done, total int) {
	return func(done, _ int) {
		if done == total || done%10 == 0 {
			fmt.Fprintf(w, "\r  %s: %d/%d customers played   ", what, done, total)
		}
	}
}

func printReport(ctx context.Context, w io.Writer, d *deps, cfg *config.Config, customers []*traffic.Customer, o *traffic.Outcome,
	rep *traffic.Report, kit *kitsim.Server, circle *circlesim.Server, converged time.Duration, started time.Time) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("\n== launchready demo report ==")
	p("customers                 %d played, %d customer records, %d duplicate records", o.Customers, o.Identities, o.DuplicateRecords)
	p("true final state          %d/%d customers match (converged %s after the first event)", o.Matched, o.Customers, converged.Round(time.Second))
	for _, wrong := range o.Wrong {
		p("  MISMATCH  %s", wrong)
	}
	var statuses []string
	for s := range o.ByStatus {
		statuses = append(statuses, s)
	}
	sort.Strings(statuses)
	var parts []string
	for _, s := range statuses {
		parts = append(parts, fmt.Sprintf("%s %d", s, o.ByStatus[s]))
	}
	p("entitlements by status    %s", strings.Join(parts, ", "))
	p("webhooks sent             %d (%d duplicate deliveries, %d retries after 5xx), p50 %.1f ms, p95 %.1f ms",
		rep.Webhooks, rep.Duplicates, rep.Retries, rep.P50MS, rep.P95MS)
	p("forged deliveries         %d sent with a wrong signature, %d refused (401)", rep.Forged, rep.ForgedRefused)
	stats, err := audit.Stats(ctx, d.ch, cfg.ClickHouseDatabase, audit.StatsQuery{Since: started})
	if err != nil {
		p("audit stats               unavailable: %v", err)
	} else {
		// Every refusal ingest answered is in the audit trail: the forged
		// deliveries and the non-2xx answers the providers retried after.
		answered := rep.ForgedRefused
		for code, n := range rep.Rejected {
			if code >= 400 {
				answered += n
			}
		}
		var audited int64
		for _, pr := range stats.Providers {
			audited += pr.Rejected
		}
		p("refusals in the audit     %d of the %d refusals ingest answered", audited, answered)
		_ = audit.WriteStats(w, stats)
	}
	ks, cs := kit.Stats(), circle.Stats()
	p("sink calls                Kit: %d requests, %d writes, %d rate-limit violations, %d duplicate tags", ks.TotalRequests(), ks.Writes, ks.Violations, ks.DuplicateTags)
	p("                          Circle: %d requests, %d writes, %d rate-limit violations, %d duplicate tags", cs.TotalRequests(), cs.Writes, cs.Violations, cs.DuplicateTags)
	sample := customers[0]
	for _, c := range customers {
		if c.Life == traffic.LifeRefunded {
			sample = c
			break
		}
	}
	p("\nexplore")
	p("  ops page      http://%s/ops/?token=%s   (while the pipeline runs: make demo ARGS=--stay)", cfg.HTTPAddr, cfg.OpsToken.Reveal())
	db := "LR_CLICKHOUSE_DATABASE=" + cfg.ClickHouseDatabase + " "
	p("  audit CLI     %sbin/launchready audit why --email %s", db, sample.Email)
	p("                %sbin/launchready audit timeline --email %s", db, sample.Email)
	p("                %sbin/launchready audit stats --since 1h", db)
}
