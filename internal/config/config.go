// Package config holds launchready's one Config: every setting comes from an
// LR_* environment variable and can be overridden by a flag of the same name
// (LR_KAFKA_BROKERS ↔ --kafka-brokers). Defaults match the local stack that
// scripts/stack.sh starts, so `launchready run` needs no flags there.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/launchready/launchready/internal/redact"
)

// Secret is a string that never prints: fmt, slog and JSON all see "[redacted]".
// Use Reveal() at the one place the value is needed (an HMAC key, an auth header).
type Secret string

const redacted = "[redacted]"

func (s Secret) String() string   { return redacted }
func (s Secret) GoString() string { return redacted }

// MarshalJSON keeps secrets out of any JSON a Config is marshalled into.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// Reveal returns the secret's value. Callers must not log it.
func (s Secret) Reveal() string { return string(s) }

// Set reports whether the secret has a value.
func (s Secret) Set() bool { return s != "" }

// Config is every setting of every stage. Field tags:
//
//	env:     the environment variable (the flag is its lower-case, dashed form without LR_)
//	default: the default value (matches the local stack)
//	help:    the README table's description
//
// A field of type Secret is redacted everywhere and registered with obs so that
// its value is scrubbed from log lines even when it appears inside an error.
type Config struct {
	KafkaBrokers    []string `env:"LR_KAFKA_BROKERS" default:"127.0.0.1:19092" help:"Kafka bootstrap brokers, comma-separated"`
	TopicPrefix     string   `env:"LR_TOPIC_PREFIX" default:"lr." help:"prefix of every topic; must start with lr."`
	KafkaPartitions int      `env:"LR_KAFKA_PARTITIONS" default:"6" help:"partitions of each topic created by migrate"`
	KafkaReplicas   int      `env:"LR_KAFKA_REPLICATION" default:"1" help:"replication factor of each topic created by migrate"`

	PostgresURL      string `env:"LR_POSTGRES_URL" default:"postgres://postgres@127.0.0.1:54329/app?sslmode=disable" help:"the app's database: the CDC source"`
	StatePostgresURL string `env:"LR_STATE_POSTGRES_URL" default:"postgres://postgres@127.0.0.1:54329/launchready?sslmode=disable" help:"launchready's own state (dedup window, Circle poll cursor)"`

	ClickHouseAddr     string `env:"LR_CLICKHOUSE_ADDR" default:"127.0.0.1:19000" help:"ClickHouse native-protocol address (not HTTP)"`
	ClickHouseDatabase string `env:"LR_CLICKHOUSE_DATABASE" default:"launchready" help:"ClickHouse database of the audit trail"`
	ClickHouseUser     string `env:"LR_CLICKHOUSE_USER" default:"default" help:"ClickHouse user"`
	ClickHousePassword Secret `env:"LR_CLICKHOUSE_PASSWORD" default:"" help:"ClickHouse password"`

	HTTPAddr        string        `env:"LR_HTTP_ADDR" default:"127.0.0.1:8080" help:"webhooks, /metrics, /healthz, /readyz and the ops page"`
	ShutdownTimeout time.Duration `env:"LR_SHUTDOWN_TIMEOUT" default:"20s" help:"deadline for draining and flushing on shutdown"`
	LogLevel        string        `env:"LR_LOG_LEVEL" default:"info" help:"debug, info, warn or error"`
	OpsToken        Secret        `env:"LR_OPS_TOKEN" default:"" help:"bearer token for the ops page and its API; empty disables them"`
	CORSOrigins     []string      `env:"LR_CORS_ORIGINS" default:"" help:"origins allowed to call the ops API from a browser, comma-separated"`

	StripeWebhookSecret Secret        `env:"LR_STRIPE_WEBHOOK_SECRET" default:"" help:"Stripe endpoint signing secret (whsec_…); several comma-separated during rotation"`
	KitWebhookSecret    Secret        `env:"LR_KIT_WEBHOOK_SECRET" default:"" help:"Kit webhook signing secret; several comma-separated during rotation"`
	CirclePushSecret    Secret        `env:"LR_CIRCLE_PUSH_SECRET" default:"" help:"shared secret a Circle workflow sends in X-Circle-Push-Secret"`
	WebhookTolerance    time.Duration `env:"LR_WEBHOOK_TOLERANCE" default:"300s" help:"largest accepted age of a signed webhook timestamp"`
	WebhookMaxBody      int64         `env:"LR_WEBHOOK_MAX_BODY" default:"1048576" help:"largest accepted webhook body in bytes"`
	KitLegacyWebhooks   bool          `env:"LR_KIT_LEGACY_WEBHOOKS" default:"false" help:"accept unsigned legacy Kit webhook bodies (stored as unverified)"`
	DedupWindow         time.Duration `env:"LR_DEDUP_WINDOW" default:"720h" help:"how long a provider event id is remembered for duplicate detection"`

	StripeAPIKey  Secret `env:"LR_STRIPE_API_KEY" default:"" help:"Stripe secret key for the events backfill"`
	StripeBaseURL string `env:"LR_STRIPE_BASE_URL" default:"https://api.stripe.com" help:"Stripe API base URL"`

	CircleAPIToken     Secret        `env:"LR_CIRCLE_API_TOKEN" default:"" help:"Circle Admin API v2 token"`
	CircleBaseURL      string        `env:"LR_CIRCLE_BASE_URL" default:"https://app.circle.so/api/admin/v2" help:"Circle Admin API v2 base URL"`
	CircleAuthScheme   string        `env:"LR_CIRCLE_AUTH_SCHEME" default:"Bearer" help:"Authorization scheme for Circle: Bearer or Token (documents differ)"`
	CirclePollInterval time.Duration `env:"LR_CIRCLE_POLL_INTERVAL" default:"60s" help:"how often the Circle member poller runs; 0 disables it"`
	CircleMonthlyQuota int           `env:"LR_CIRCLE_MONTHLY_QUOTA" default:"5000" help:"Circle API requests allowed per calendar month (plan quota)"`

	KitAPIKey    Secret `env:"LR_KIT_API_KEY" default:"" help:"Kit API v4 key (X-Kit-Api-Key)"`
	KitBaseURL   string `env:"LR_KIT_BASE_URL" default:"https://api.kit.com/v4" help:"Kit API v4 base URL"`
	KitRateLimit int    `env:"LR_KIT_RATE_LIMIT" default:"120" help:"Kit requests allowed per 60 s: 120 with an API key, 600 with an OAuth token"`

	MappingFile string `env:"LR_MAPPING_FILE" default:"" help:"YAML mapping of prices to plans, Circle groups/tags and Kit tags/fields"`

	CDCSlot        string   `env:"LR_CDC_SLOT" default:"launchready" help:"logical replication slot name"`
	CDCPublication string   `env:"LR_CDC_PUBLICATION" default:"launchready" help:"publication name"`
	CDCTables      []string `env:"LR_CDC_TABLES" default:"" help:"schema.table list to publish, comma-separated; empty: all tables"`

	SinkDryRun bool `env:"LR_SINK_DRY_RUN" default:"false" help:"compute and record sink diffs without calling write endpoints"`

	AlertWebhookURL string `env:"LR_ALERT_WEBHOOK_URL" default:"" help:"Slack-compatible URL alerts are posted to"`
}

// Setting describes one field of Config, for flags, the README and tests.
type Setting struct {
	Env, Flag, Default, Help, Type string
	Secret                         bool
	index                          int
}

// Settings lists every setting in declaration order.
func Settings() []Setting {
	t := reflect.TypeOf(Config{})
	out := make([]Setting, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		env := f.Tag.Get("env")
		if env == "" {
			continue
		}
		out = append(out, Setting{
			Env:     env,
			Flag:    FlagName(env),
			Default: f.Tag.Get("default"),
			Help:    f.Tag.Get("help"),
			Type:    typeName(f.Type),
			Secret:  f.Type == reflect.TypeOf(Secret("")),
			index:   i,
		})
	}
	return out
}

// FlagName turns LR_KAFKA_BROKERS into kafka-brokers.
func FlagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "LR_")), "_", "-")
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "duration"
	case t == reflect.TypeOf(Secret("")):
		return "secret"
	case t.Kind() == reflect.Slice:
		return "list"
	default:
		return t.Kind().String()
	}
}

// Load builds a Config from defaults, then the environment, then the flags in
// args (flags of the given FlagSet are registered here; pass nil to skip flags).
// It does not validate: call Validate once the stage knows what it needs.
func Load(fs *flag.FlagSet, args []string) (*Config, error) {
	return LoadFrom(os.LookupEnv, fs, args)
}

// LoadFrom is Load with an explicit environment, for tests.
func LoadFrom(lookup func(string) (string, bool), fs *flag.FlagSet, args []string) (*Config, error) {
	cfg := &Config{}
	v := reflect.ValueOf(cfg).Elem()
	for _, s := range Settings() {
		raw := s.Default
		if envVal, ok := lookup(s.Env); ok {
			raw = envVal
		}
		if err := setField(v.Field(s.index), raw); err != nil {
			return nil, fmt.Errorf("config: %s: %w", s.Env, err)
		}
	}
	if fs != nil {
		for _, s := range Settings() {
			field := v.Field(s.index)
			fs.Func(s.Flag, s.Help+" ($"+s.Env+")", func(val string) error {
				return setField(field, val)
			})
		}
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
	}
	for _, s := range Settings() {
		if s.Secret {
			for _, part := range strings.Split(v.Field(s.index).String(), ",") {
				registerSecret(strings.TrimSpace(part))
			}
		}
	}
	return cfg, nil
}

func setField(f reflect.Value, raw string) error {
	switch {
	case f.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("not a duration (e.g. 30s, 5m): %q", raw)
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(raw)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("not a boolean: %q", raw)
		}
		f.SetBool(b)
	case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("not a whole number: %q", raw)
		}
		f.SetInt(n)
	case f.Kind() == reflect.Slice:
		var items []string
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				items = append(items, p)
			}
		}
		f.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("unsupported setting type %s", f.Type())
	}
	return nil
}

// Need names what a stage requires beyond the always-checked settings.
type Need int

const (
	NeedKafka Need = 1 << iota
	NeedPostgres
	NeedStatePostgres
	NeedClickHouse
	NeedHTTP
)

// Validate checks the settings a stage needs, and reports every problem at once.
func (c *Config) Validate(needs Need) error {
	var errs []error
	bad := func(env, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", env, fmt.Sprintf(format, a...)))
	}
	if !strings.HasPrefix(c.TopicPrefix, "lr.") {
		bad("LR_TOPIC_PREFIX", "must start with \"lr.\", got %q", c.TopicPrefix)
	}
	if c.KafkaPartitions < 1 {
		bad("LR_KAFKA_PARTITIONS", "must be at least 1")
	}
	if c.KafkaReplicas < 1 {
		bad("LR_KAFKA_REPLICATION", "must be at least 1")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("LR_LOG_LEVEL", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.WebhookMaxBody < 1024 {
		bad("LR_WEBHOOK_MAX_BODY", "must be at least 1024 bytes")
	}
	if c.WebhookTolerance <= 0 {
		bad("LR_WEBHOOK_TOLERANCE", "must be positive")
	}
	if c.KitRateLimit < 1 {
		bad("LR_KIT_RATE_LIMIT", "must be at least 1")
	}
	if c.CircleAuthScheme != "Bearer" && c.CircleAuthScheme != "Token" {
		bad("LR_CIRCLE_AUTH_SCHEME", "must be Bearer or Token, got %q", c.CircleAuthScheme)
	}
	for env, u := range map[string]string{"LR_STRIPE_BASE_URL": c.StripeBaseURL, "LR_CIRCLE_BASE_URL": c.CircleBaseURL, "LR_KIT_BASE_URL": c.KitBaseURL} {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad(env, "must be an http(s) URL, got %q", u)
		}
	}
	if needs&NeedKafka != 0 {
		if len(c.KafkaBrokers) == 0 {
			bad("LR_KAFKA_BROKERS", "is empty")
		}
		for _, b := range c.KafkaBrokers {
			if _, _, err := net.SplitHostPort(b); err != nil {
				bad("LR_KAFKA_BROKERS", "%q is not host:port", b)
			}
		}
	}
	if needs&NeedPostgres != 0 {
		checkPGURL(bad, "LR_POSTGRES_URL", c.PostgresURL)
	}
	if needs&NeedStatePostgres != 0 {
		checkPGURL(bad, "LR_STATE_POSTGRES_URL", c.StatePostgresURL)
	}
	if needs&NeedClickHouse != 0 {
		if _, _, err := net.SplitHostPort(c.ClickHouseAddr); err != nil {
			bad("LR_CLICKHOUSE_ADDR", "%q is not host:port (the native protocol port, 9000 by default)", c.ClickHouseAddr)
		}
		if c.ClickHouseDatabase == "" {
			bad("LR_CLICKHOUSE_DATABASE", "is empty")
		}
	}
	if needs&NeedHTTP != 0 {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			bad("LR_HTTP_ADDR", "%q is not host:port", c.HTTPAddr)
		}
	}
	return errors.Join(errs...)
}

func checkPGURL(bad func(string, string, ...any), env, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		// Never echo the URL itself: it may carry a password.
		bad(env, "must be a postgres:// URL with a host")
	}
}

// Topic returns the full name of a topic, e.g. Topic("raw.stripe") = "lr.raw.stripe".
func (c *Config) Topic(name string) string { return c.TopicPrefix + name }

func registerSecret(v string) { redact.Register(v) }

// RegisterSecret scrubs a secret set after Load (e.g. a generated demo
// credential) from every log line, like the secrets Load read.
func RegisterSecret(s Secret) {
	for _, part := range strings.Split(string(s), ",") {
		registerSecret(strings.TrimSpace(part))
	}
}
