package config

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

// docker-compose cannot run here; this keeps it honest against the config:
// the stack's services exist on current images with healthchecks, publish the
// ports the defaults point at, and the pipeline's environment names only real
// settings that point at those services.
func TestDockerComposeMatchesConfig(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	def, _ := LoadFrom(func(string) (string, bool) { return "", false }, nil, nil)
	_, kafkaPort, _ := net.SplitHostPort(def.KafkaBrokers[0])
	_, chPort, _ := net.SplitHostPort(def.ClickHouseAddr)
	pgURL, _ := url.Parse(def.PostgresURL)

	for name, want := range map[string]struct{ image, hostPort string }{
		"kafka":      {"apache/kafka:4.", kafkaPort},
		"postgres":   {"postgres:17", pgURL.Port()},
		"clickhouse": {"clickhouse/clickhouse-server:", chPort},
	} {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("service %s missing", name)
			continue
		}
		if !strings.HasPrefix(s.Image, want.image) {
			t.Errorf("%s image %q, want %s…", name, s.Image, want.image)
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("%s has no healthcheck", name)
		}
		published := false
		for _, p := range s.Ports {
			if strings.HasPrefix(p, want.hostPort+":") {
				published = true
			}
		}
		if !published {
			t.Errorf("%s does not publish host port %s (the default settings point there)", name, want.hostPort)
		}
	}
	if !strings.Contains(strings.Join(c.Services["postgres"].Command, " "), "wal_level=logical") {
		t.Error("postgres is not started with wal_level=logical")
	}

	settings := map[string]bool{}
	for _, s := range Settings() {
		settings[s.Env] = true
	}
	lr, ok := c.Services["launchready"]
	if !ok {
		t.Fatal("service launchready missing")
	}
	if lr.Healthcheck == nil || !strings.Contains(strings.Join(lr.Healthcheck.Test, " "), "/readyz") {
		t.Error("launchready healthcheck does not use /readyz")
	}
	for k := range lr.Environment {
		if !settings[k] {
			t.Errorf("launchready environment sets %s, which is not a setting", k)
		}
	}
	env := func(k string) (string, bool) { v, ok := lr.Environment[k]; return v, ok }
	cfg, err := LoadFrom(env, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(NeedKafka | NeedPostgres | NeedStatePostgres | NeedClickHouse | NeedHTTP); err != nil {
		t.Errorf("launchready's compose environment does not validate: %v", err)
	}
	for _, hostPort := range []string{cfg.KafkaBrokers[0], cfg.ClickHouseAddr} {
		host, _, _ := net.SplitHostPort(hostPort)
		if _, ok := c.Services[host]; !ok {
			t.Errorf("launchready points at %s, not a compose service", hostPort)
		}
	}
	for _, raw := range []string{cfg.PostgresURL, cfg.StatePostgresURL} {
		u, _ := url.Parse(raw)
		if u.Hostname() != "postgres" {
			t.Errorf("a postgres URL points at %s, not the postgres service", u.Hostname())
		}
	}
}
