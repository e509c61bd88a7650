package compose

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/syncbridge/syncbridge/internal/monitoring"
)

// The reference stack loads the shipped alert rules into Prometheus and
// the shipped dashboard into Grafana, with a data source the panels find.
func TestStackLoadsAlertsAndDashboard(t *testing.T) {
	f := variants(t)["defaults"]
	mounted := func(svc, target string) string {
		for _, v := range f.Services[svc].Volumes {
			src, rest, _ := strings.Cut(v, ":")
			dst, _, _ := strings.Cut(rest, ":")
			if dst == target {
				return strings.TrimPrefix(src, "./")
			}
		}
		return ""
	}

	// Prometheus: rule_files names where the compose file mounts alerts.yml.
	var prom struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	readYAML(t, filepath.Join(repo, "deploy", "prometheus.yml"), &prom)
	if len(prom.RuleFiles) != 1 || mounted("prometheus", prom.RuleFiles[0]) != monitoring.AlertsFile {
		t.Errorf("prometheus.yml loads %v; the alert rules %s are mounted at %q", prom.RuleFiles, monitoring.AlertsFile, prom.RuleFiles)
	}

	g, ok := f.Services["grafana"]
	if !ok {
		t.Fatal("no grafana service")
	}
	if g.DependsOn["prometheus"] != "service_healthy" || g.Healthcheck == nil {
		t.Errorf("grafana must wait for a healthy prometheus and have a healthcheck")
	}
	for _, p := range g.Ports {
		if !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("grafana publishes %s beyond loopback", p)
		}
	}
	prov := mounted("grafana", "/etc/grafana/provisioning")
	if prov == "" {
		t.Fatal("grafana has no provisioning mount")
	}

	var ds struct {
		Datasources []struct {
			UID, Type, URL string
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(repo, prov, "datasources", "prometheus.yml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Fatalf("data source: %+v", ds.Datasources)
	}

	var dp struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(repo, prov, "dashboards", "syncbridge.yml"), &dp)
	if len(dp.Providers) != 1 {
		t.Fatalf("dashboard providers: %+v", dp.Providers)
	}
	dashTarget := dp.Providers[0].Options.Path + "/syncbridge.json"
	if mounted("grafana", dashTarget) != monitoring.DashboardFile {
		t.Errorf("the dashboard provider reads %s, where %s is not mounted", dashTarget, monitoring.DashboardFile)
	}

	// Every panel names the provisioned data source.
	b, err := os.ReadFile(filepath.Join(repo, monitoring.DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if d, ok := x["datasource"].(map[string]any); ok && d["type"] == "prometheus" {
				uids = append(uids, d["uid"].(string))
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	var dash any
	if err := yaml.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	walk(dash)
	if len(uids) == 0 {
		t.Fatal("dashboard names no Prometheus data source")
	}
	for _, u := range slices.Compact(uids) {
		if u != ds.Datasources[0].UID {
			t.Errorf("dashboard uses data source %q, provisioned is %q", u, ds.Datasources[0].UID)
		}
	}
}

func readYAML(t *testing.T, path string, out any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
