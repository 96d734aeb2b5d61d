// Package alerts evaluates launchready's alert rules without Prometheus: the
// thresholds of dashboards/alerts.rules.yml, computed from the ClickHouse
// audit trail (duplicates, dead letters, mismatches, refunds, silence), the
// Kafka consumer groups (backlog), the replication slot (lag) and, when
// reachable, the pipeline's own /metrics (refused webhooks, which never
// reach the audit trail). Transitions are posted to a Slack-compatible
// webhook as {"text": …}: one post when an alert fires, one when it resolves.
package alerts

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Thresholds are the alert settings. The same numbers are written into
// dashboards/alerts.rules.yml; a test keeps the two in line. Each field is
// read from the LR_ALERT_* variable in its tag (see LoadThresholds).
type Thresholds struct {
	// Interval between evaluations of `launchready alerts`.
	Interval time.Duration `env:"LR_ALERT_INTERVAL" default:"1m" help:"how often launchready alerts evaluates the rules"`
	// ResolveRatio is the hysteresis band: a firing alert on a measured value
	// resolves only once the value is at most threshold × ResolveRatio.
	ResolveRatio float64 `env:"LR_ALERT_RESOLVE_RATIO" default:"0.8" help:"a firing alert resolves only below threshold × this ratio"`
	// KeepFiring is how long the resolve condition must hold before an alert
	// resolves (Prometheus' keep_firing_for).
	KeepFiring time.Duration `env:"LR_ALERT_KEEP_FIRING" default:"10m" help:"how long an alert's resolve condition must hold before it resolves"`

	WebhookFailureRate   float64       `env:"LR_ALERT_WEBHOOK_FAILURE_RATE" default:"0.01" help:"webhook failure rate per provider that fires (refused or dead-lettered deliveries / deliveries)"`
	WebhookFailureWindow time.Duration `env:"LR_ALERT_WEBHOOK_FAILURE_WINDOW" default:"15m" help:"window of the webhook failure rate"`
	WebhookFailureMin    int64         `env:"LR_ALERT_WEBHOOK_FAILURE_MIN" default:"3" help:"failures within the window needed before the rate counts"`

	DuplicateFactor   float64       `env:"LR_ALERT_DUPLICATE_FACTOR" default:"3" help:"duplicate rate over this many times its baseline fires"`
	DuplicateWindow   time.Duration `env:"LR_ALERT_DUPLICATE_WINDOW" default:"15m" help:"window of the duplicate rate"`
	DuplicateBaseline time.Duration `env:"LR_ALERT_DUPLICATE_BASELINE" default:"24h" help:"window of the duplicate rate's baseline"`
	DuplicateFloor    float64       `env:"LR_ALERT_DUPLICATE_FLOOR" default:"0.01" help:"smallest baseline duplicate rate (so a quiet baseline does not make every duplicate a spike)"`
	DuplicateMin      int64         `env:"LR_ALERT_DUPLICATE_MIN" default:"10" help:"duplicates within the window needed before the rate counts"`

	MismatchRate float64 `env:"LR_ALERT_MISMATCH_RATE" default:"0.05" help:"open mismatches per customer that fires"`
	MismatchMin  int64   `env:"LR_ALERT_MISMATCH_MIN" default:"1" help:"open mismatches needed before the rate counts"`

	RefundGrace    time.Duration `env:"LR_ALERT_REFUND_GRACE" default:"5m" help:"how long after a full refund access may still be granted"`
	RefundLookback time.Duration `env:"LR_ALERT_REFUND_LOOKBACK" default:"168h" help:"how far back refunds are checked"`

	BacklogWindow time.Duration `env:"LR_ALERT_BACKLOG_WINDOW" default:"15m" help:"a consumer group's backlog growing for this long fires"`
	BacklogMin    int64         `env:"LR_ALERT_BACKLOG_MIN" default:"1000" help:"smallest backlog (records) that counts as a backlog"`

	SlotLagBytes int64 `env:"LR_ALERT_SLOT_LAG_BYTES" default:"268435456" help:"replication slot lag in bytes that fires"`

	Silence         time.Duration `env:"LR_ALERT_SILENCE" default:"24h" help:"no event at all from a provider for this long fires"`
	SilenceLookback time.Duration `env:"LR_ALERT_SILENCE_LOOKBACK" default:"720h" help:"a provider counts as in use when it sent an event within this window"`

	// MetricsURL, when set, is an ingest process's /metrics, read for refused
	// webhook deliveries instead of the audit trail's rejected_webhooks
	// (which counts every ingest instance and survives restarts).
	MetricsURL string `env:"LR_ALERT_METRICS_URL" default:"" help:"an ingest /metrics to read refused webhook counts from; empty: the audit trail's rejected_webhooks table"`
}

// ThresholdSetting describes one field of Thresholds, for the README.
type ThresholdSetting struct{ Env, Default, Help string }

// ThresholdSettings lists every LR_ALERT_* setting in declaration order.
func ThresholdSettings() []ThresholdSetting {
	t := reflect.TypeOf(Thresholds{})
	out := make([]ThresholdSetting, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		out = append(out, ThresholdSetting{Env: f.Tag.Get("env"), Default: f.Tag.Get("default"), Help: f.Tag.Get("help")})
	}
	return out
}

// DefaultThresholds returns the defaults of every setting.
func DefaultThresholds() Thresholds {
	th, err := ThresholdsFrom(func(string) (string, bool) { return "", false })
	if err != nil {
		panic(err) // the defaults are constants checked by a test
	}
	return th
}

// LoadThresholds reads the defaults overridden by LR_ALERT_* variables.
func LoadThresholds() (Thresholds, error) { return ThresholdsFrom(os.LookupEnv) }

// ThresholdsFrom is LoadThresholds with an explicit environment.
func ThresholdsFrom(lookup func(string) (string, bool)) (Thresholds, error) {
	var th Thresholds
	v := reflect.ValueOf(&th).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		raw := f.Tag.Get("default")
		if s, ok := lookup(f.Tag.Get("env")); ok && strings.TrimSpace(s) != "" {
			raw = strings.TrimSpace(s)
		}
		if err := setValue(v.Field(i), raw); err != nil {
			return th, fmt.Errorf("%s: %w", f.Tag.Get("env"), err)
		}
	}
	return th, th.Validate()
}

func setValue(f reflect.Value, raw string) error {
	switch {
	case f.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("not a duration (e.g. 15m): %q", raw)
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("not a whole number: %q", raw)
		}
		f.SetInt(n)
	case f.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("not a number: %q", raw)
		}
		f.SetFloat(x)
	case f.Kind() == reflect.String:
		f.SetString(raw)
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}

// Validate reports settings that cannot work.
func (th Thresholds) Validate() error {
	var bad []string
	positive := map[string]time.Duration{
		"LR_ALERT_INTERVAL": th.Interval, "LR_ALERT_WEBHOOK_FAILURE_WINDOW": th.WebhookFailureWindow,
		"LR_ALERT_DUPLICATE_WINDOW": th.DuplicateWindow, "LR_ALERT_DUPLICATE_BASELINE": th.DuplicateBaseline,
		"LR_ALERT_REFUND_LOOKBACK": th.RefundLookback, "LR_ALERT_BACKLOG_WINDOW": th.BacklogWindow,
		"LR_ALERT_SILENCE": th.Silence, "LR_ALERT_SILENCE_LOOKBACK": th.SilenceLookback,
	}
	for _, s := range ThresholdSettings() {
		if d, ok := positive[s.Env]; ok && d <= 0 {
			bad = append(bad, s.Env+" must be positive")
		}
	}
	if th.KeepFiring < 0 || th.RefundGrace < 0 {
		bad = append(bad, "LR_ALERT_KEEP_FIRING and LR_ALERT_REFUND_GRACE must not be negative")
	}
	if th.ResolveRatio <= 0 || th.ResolveRatio > 1 {
		bad = append(bad, "LR_ALERT_RESOLVE_RATIO must be in (0, 1]")
	}
	if th.WebhookFailureRate <= 0 || th.WebhookFailureRate >= 1 {
		bad = append(bad, "LR_ALERT_WEBHOOK_FAILURE_RATE must be in (0, 1)")
	}
	if th.DuplicateFactor <= 1 {
		bad = append(bad, "LR_ALERT_DUPLICATE_FACTOR must be above 1")
	}
	if th.DuplicateWindow >= th.DuplicateBaseline {
		bad = append(bad, "LR_ALERT_DUPLICATE_WINDOW must be shorter than LR_ALERT_DUPLICATE_BASELINE")
	}
	if th.MismatchRate <= 0 || th.SlotLagBytes <= 0 {
		bad = append(bad, "LR_ALERT_MISMATCH_RATE and LR_ALERT_SLOT_LAG_BYTES must be positive")
	}
	if th.SilenceLookback <= th.Silence {
		bad = append(bad, "LR_ALERT_SILENCE_LOOKBACK must be longer than LR_ALERT_SILENCE")
	}
	if len(bad) > 0 {
		return fmt.Errorf("alert settings: %s", strings.Join(bad, "; "))
	}
	return nil
}
