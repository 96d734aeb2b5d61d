package dashboards

import (
	"strings"
	"testing"
)

// Grafana's provisioning (mounted by docker-compose) defines every data
// source uid the dashboards use and loads them from the mounted folder;
// Prometheus scrapes the pipeline and loads the rule file.
func TestProvisioningMatchesDashboards(t *testing.T) {
	t.Parallel()
	var ds struct {
		Datasources []struct {
			UID, Type string
			JSONData  map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	readYAML(t, "provisioning/datasources/launchready.yml", &ds)
	types := map[string]string{}
	for _, d := range ds.Datasources {
		types[d.UID] = d.Type
		if d.Type == ClickHouse && (d.JSONData["protocol"] != "native" || d.JSONData["defaultDatabase"] != "launchready") {
			t.Errorf("ClickHouse data source must use the native protocol and the launchready database: %v", d.JSONData)
		}
	}
	dashes, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]bool{}
	for _, d := range dashes {
		if d.UID == "" || uids[d.UID] {
			t.Errorf("%s: missing or repeated uid %q", d.File, d.UID)
		}
		uids[d.UID] = true
		for _, p := range d.Panels {
			if got := types[p.Datasource.UID]; got != p.Datasource.Type {
				t.Errorf("%s / %s: data source %s/%s is not provisioned", d.File, p.Title, p.Datasource.Type, p.Datasource.UID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s / %s: no query", d.File, p.Title)
			}
		}
	}
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "provisioning/dashboards/launchready.yml", &prov)
	if len(prov.Providers) != 1 || prov.Providers[0].Options.Path != "/var/lib/grafana/dashboards" {
		t.Errorf("dashboard provider must load /var/lib/grafana/dashboards: %+v", prov)
	}
	var prom struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "prometheus.yml", &prom)
	if strings.Join(prom.RuleFiles, ",") != "/etc/prometheus/alerts.rules.yml" ||
		len(prom.ScrapeConfigs) != 1 || strings.Join(prom.ScrapeConfigs[0].StaticConfigs[0].Targets, ",") != "launchready:8080" {
		t.Errorf("prometheus.yml: %+v", prom)
	}
}
