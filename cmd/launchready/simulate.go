package main

import (
	"context"
	"errors"
	"flag"
	"time"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/internal/obs"
	circlesim "github.com/launchready/launchready/simulate/circle"
	kitsim "github.com/launchready/launchready/simulate/kit"
)

func init() {
	register("simulate", "run a provider API simulator (simulate circle|kit --addr host:port [fault flags]) or synthetic traffic (simulate traffic)", runSimulate)
}

// faultFlags are the fault-injection switches both simulators share; the
// /_sim/faults endpoint changes them at run time.
type faultFlags struct {
	throttle, errs, drop, slow float64
	dropAfterApply             bool
	delay                      time.Duration
}

func (f *faultFlags) register(fs *flag.FlagSet) {
	fs.Float64Var(&f.throttle, "throttle", 0, "fraction of requests answered 429 (a storm of someone else's traffic)")
	fs.Float64Var(&f.errs, "errors", 0, "fraction of requests answered 500/502/503")
	fs.Float64Var(&f.drop, "drop", 0, "fraction of connections closed without an answer")
	fs.BoolVar(&f.dropAfterApply, "drop-after-apply", false, "apply a dropped write before closing (the answer is lost, not the request)")
	fs.Float64Var(&f.slow, "slow", 0, "fraction of requests delayed by --delay")
	fs.DurationVar(&f.delay, "delay", 500*time.Millisecond, "delay of a slow request")
}

func runSimulate(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "traffic" {
		return runTraffic(ctx, args[1:])
	}
	if len(args) == 0 || (args[0] != "kit" && args[0] != "circle") {
		return errors.New("usage: launchready simulate circle|kit --addr host:port [flags], or simulate traffic [flags] (-h lists them)")
	}
	which := args[0]
	var addr string
	var limit int
	var window time.Duration
	var ff faultFlags
	var hookURL string
	defLimit, defWindow, defAddr := 120, 60*time.Second, "127.0.0.1:8091"
	if which == "circle" {
		defLimit, defWindow, defAddr = 2000, 5*time.Minute, "127.0.0.1:8092"
	}
	cfg, _, err := loadConfig("simulate "+which, args[1:], 0, func(fs *flag.FlagSet) {
		fs.StringVar(&addr, "addr", defAddr, "address to listen on")
		fs.IntVar(&limit, "limit", defLimit, "requests allowed per --window (the provider's real limit by default)")
		fs.DurationVar(&window, "window", defWindow, "rate-limit window")
		ff.register(fs)
		if which == "kit" {
			fs.StringVar(&hookURL, "webhook-url", "", "where to send signed webhooks on subscriber changes, e.g. http://127.0.0.1:8080/webhooks/kit (signed with LR_KIT_WEBHOOK_SECRET)")
		}
	})
	if err != nil {
		return err
	}
	log := obs.Component(newLogger(cfg), "simulate."+which)
	m, err := mapping.Resolve(cfg.MappingFile)
	if err != nil {
		return err
	}
	type server interface {
		Start(addr string) (string, error)
		Close() error
	}
	var srv server
	var api, cred string
	switch which {
	case "kit":
		f := kitsim.Faults{Throttle: ff.throttle, Errors: ff.errs, Drop: ff.drop, DropAfterApply: ff.dropAfterApply, Slow: ff.slow, Delay: ff.delay}
		if err := f.Validate(); err != nil {
			return err
		}
		tags, fields := kitsim.Seed(m)
		secret := firstSecret(cfg.KitWebhookSecret)
		if hookURL != "" && secret == "" {
			return errors.New("--webhook-url needs LR_KIT_WEBHOOK_SECRET to sign with")
		}
		s := kitsim.New(kitsim.Options{APIKey: cfg.KitAPIKey.Reveal(), Limit: limit, Window: window, Tags: tags, Fields: fields, WebhookURL: hookURL, WebhookSecret: secret, Faults: f, Log: log})
		srv, api, cred = s, "/v4", "X-Kit-Api-Key: the value of LR_KIT_API_KEY (kit-sim-key when unset)"
	case "circle":
		f := circlesim.Faults{Throttle: ff.throttle, Errors: ff.errs, Drop: ff.drop, DropAfterApply: ff.dropAfterApply, Slow: ff.slow, Delay: ff.delay}
		if err := f.Validate(); err != nil {
			return err
		}
		groups, tags, fields := circlesim.Seed(m)
		s := circlesim.New(circlesim.Options{Token: cfg.CircleAPIToken.Reveal(), Limit: limit, Window: window, AccessGroups: groups, MemberTags: tags, ProfileFields: fields, Faults: f, Log: log})
		srv, api, cred = s, circlesim.Base, "Authorization: Bearer|Token and the value of LR_CIRCLE_API_TOKEN (circle-sim-token when unset)"
	}
	url, err := srv.Start(addr)
	if err != nil {
		return err
	}
	defer srv.Close()
	log.InfoContext(ctx, which+" simulator listening", "base_url", url+api, "credential", cred, "limit", limit, "window", window.String(),
		"admin", url+"/_sim/stats, POST "+url+"/_sim/faults?errors=0.1&storm=30s")
	<-ctx.Done()
	return nil
}

// firstSecret is the first of several comma-separated secrets (rotation).
func firstSecret(s config.Secret) string {
	for i := 0; i < len(s.Reveal()); i++ {
		if s.Reveal()[i] == ',' {
			return s.Reveal()[:i]
		}
	}
	return s.Reveal()
}
