package config

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultsAreValid(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFrom(env(nil), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(NeedKafka | NeedPostgres | NeedStatePostgres | NeedClickHouse | NeedHTTP); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if got := cfg.Topic("raw.stripe"); got != "lr.raw.stripe" {
		t.Fatalf("Topic = %q", got)
	}
	if cfg.WebhookTolerance != 300*time.Second || cfg.WebhookMaxBody != 1<<20 {
		t.Fatalf("webhook defaults: %v %d", cfg.WebhookTolerance, cfg.WebhookMaxBody)
	}
}

func TestEnvThenFlagsOverride(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg, err := LoadFrom(env(map[string]string{
		"LR_KAFKA_BROKERS":       "a:1, b:2",
		"LR_HTTP_ADDR":           "127.0.0.1:9999",
		"LR_KIT_LEGACY_WEBHOOKS": "true",
	}), fs, []string{"--http-addr", "127.0.0.1:7777", "--dedup-window", "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.KafkaBrokers) != 2 || cfg.KafkaBrokers[1] != "b:2" {
		t.Fatalf("brokers = %v", cfg.KafkaBrokers)
	}
	if cfg.HTTPAddr != "127.0.0.1:7777" {
		t.Fatalf("flag did not override env: %s", cfg.HTTPAddr)
	}
	if !cfg.KitLegacyWebhooks || cfg.DedupWindow != time.Hour {
		t.Fatalf("bool/duration: %v %v", cfg.KitLegacyWebhooks, cfg.DedupWindow)
	}
}

func TestBadValuesNameTheSetting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"LR_WEBHOOK_TOLERANCE": "five minutes"}, "LR_WEBHOOK_TOLERANCE: not a duration"},
		{map[string]string{"LR_KAFKA_PARTITIONS": "many"}, "LR_KAFKA_PARTITIONS: not a whole number"},
		{map[string]string{"LR_SINK_DRY_RUN": "perhaps"}, "LR_SINK_DRY_RUN: not a boolean"},
	} {
		_, err := LoadFrom(env(tc.env), nil, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.env, err, tc.want)
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	cfg, err := LoadFrom(env(map[string]string{
		"LR_TOPIC_PREFIX":       "prod.",
		"LR_KAFKA_BROKERS":      "nohostport",
		"LR_POSTGRES_URL":       "mysql://user:hunter2secret@x/db",
		"LR_CIRCLE_AUTH_SCHEME": "Basic",
		"LR_KIT_BASE_URL":       "ftp://kit",
	}), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate(NeedKafka | NeedPostgres)
	if err == nil {
		t.Fatal("Validate accepted bad settings")
	}
	for _, want := range []string{"LR_TOPIC_PREFIX", "LR_KAFKA_BROKERS", "LR_POSTGRES_URL", "LR_CIRCLE_AUTH_SCHEME", "LR_KIT_BASE_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2secret") {
		t.Errorf("error echoes a password: %v", err)
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	t.Parallel()
	s := Secret("whsec_abcdefghijklmnop")
	for _, got := range []string{s.String(), s.GoString()} {
		if strings.Contains(got, "abcdef") {
			t.Fatalf("secret printed: %s", got)
		}
	}
	b, _ := s.MarshalJSON()
	if strings.Contains(string(b), "abcdef") {
		t.Fatalf("secret in JSON: %s", b)
	}
	if s.Reveal() != "whsec_abcdefghijklmnop" {
		t.Fatal("Reveal lost the value")
	}
}

// The README's settings table is the one documentation of the settings: it
// must list every setting with its default, and nothing else.
func TestReadmeListsEverySetting(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(LR_[A-Z0-9_]+)` \\| `([^`]*)` \\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		documented[m[1]] = m[2]
	}
	for _, s := range Settings() {
		def, ok := documented[s.Env]
		if !ok {
			t.Errorf("README settings table lacks %s", s.Env)
			continue
		}
		if def != s.Default {
			t.Errorf("README default of %s is %q, code says %q", s.Env, def, s.Default)
		}
		delete(documented, s.Env)
	}
	for env := range documented {
		t.Errorf("README documents %s, which is not a setting", env)
	}
}
