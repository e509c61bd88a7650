package monitoring

import (
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/syncbridge/syncbridge/internal/docscheck"
	"github.com/syncbridge/syncbridge/internal/metrics"
)

func root(t *testing.T) string {
	t.Helper()
	r, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// promtool returns the promtool binary; scripts/test.sh installs Debian's
// prometheus package and sets PROMETHEUS_REQUIRED=1, so there a missing
// binary fails instead of skipping.
func promtool(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("PROMETHEUS_REQUIRED") != "" {
			t.Fatal("promtool is not installed (scripts/ensure-services.sh installs Debian's prometheus package)")
		}
		t.Skip("promtool not installed; scripts/ensure-services.sh installs it")
	}
	return bin
}

func TestAlertRulesPassPromtoolCheck(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", filepath.Join(root(t), AlertsFile)).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// The firing and not-firing cases of every alert (alerts_test.yml).
func TestAlertRulesUnitTests(t *testing.T) {
	cmd := exec.Command(promtool(t), "test", "rules", "alerts_test.yml")
	cmd.Dir = filepath.Join(root(t), "deploy/prometheus")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// Every alert has a case where it fires and one where it stays silent.
func TestEveryAlertHasFiringAndSilentCases(t *testing.T) {
	rules := loadRules(t)
	b, err := os.ReadFile(filepath.Join(root(t), "deploy/prometheus/alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, r := range rules {
		if !fires[r.Alert] || !silent[r.Alert] {
			t.Errorf("alert %s: firing case %v, silent case %v", r.Alert, fires[r.Alert], silent[r.Alert])
		}
	}
}

func loadRules(t *testing.T) []Rule {
	t.Helper()
	rules, err := LoadRules(filepath.Join(root(t), AlertsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) == 0 {
		t.Fatal("no rules")
	}
	return rules
}

// Each alert says what happened and where to look, and its runbook link
// lands on a "Runbook: …" heading of docs/operations.md. Descriptions
// template only pipeline labels and the value: a key or payload field in
// an alert would leave the database for the alerting pipeline.
func TestEveryAlertIsDocumented(t *testing.T) {
	ops, err := os.ReadFile(filepath.Join(root(t), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := docscheck.Anchors(string(ops))
	allowed := regexp.MustCompile(`\{\{\s*(\$value|\$labels\.(instance|reason|job))\b[^}]*\}\}`)
	for _, r := range loadRules(t) {
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[k]) == "" {
				t.Errorf("alert %s has no %s", r.Alert, k)
			}
		}
		if r.Labels["severity"] == "" {
			t.Errorf("alert %s has no severity", r.Alert)
		}
		_, frag, ok := strings.Cut(r.Annotations["runbook_url"], "/docs/operations.md#")
		if !ok || !strings.HasPrefix(frag, "runbook-") || !anchors[frag] {
			t.Errorf("alert %s: runbook_url %q does not land on a \"Runbook: …\" heading of docs/operations.md", r.Alert, r.Annotations["runbook_url"])
		}
		for _, k := range []string{"summary", "description"} {
			rest := allowed.ReplaceAllString(r.Annotations[k], "")
			if strings.Contains(rest, "{{") {
				t.Errorf("alert %s %s templates something other than the value, instance, job or reason: %q", r.Alert, k, r.Annotations[k])
			}
		}
	}
}

func TestDashboardIsWellFormed(t *testing.T) {
	d, err := LoadDashboard(filepath.Join(root(t), DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard needs a uid and a title (provisioning and links use them)")
	}
	qs := d.Queries()
	if len(qs) < 10 {
		t.Fatalf("dashboard has %d queries", len(qs))
	}
	panels := map[string]bool{}
	for _, q := range qs {
		panels[q.Panel] = true
		if strings.Contains(GrafanaVars(q.Expr), "$") {
			t.Errorf("panel %q uses a variable the tests cannot substitute: %q", q.Panel, q.Expr)
		}
	}
	for _, want := range []string{"Drain rate", "Backlog and in flight", "Outcomes", "Quarantine by reason",
		"Insert latency", "Ack latency", "Broker calls and refusals", "Workflow task schedule-to-start", "Activity schedule-to-start", "Workers ready"} {
		if !panels[want] {
			t.Errorf("dashboard lacks panel %q (has %v)", want, panels)
		}
	}
}

// Every syncbridge_* metric the rules and dashboard name is one the
// pipeline's registry serves. (The SDK's temporal_* names are proven by the
// live-Prometheus test in internal/workerapp.)
func TestRulesAndDashboardNameOnlyEmittedPipelineMetrics(t *testing.T) {
	reg := metrics.New()
	p := reg.Pipeline
	// Tagged series appear on first use; use each once.
	p.Outcome("conflict")
	p.Quarantined("bad_json")
	// ack_failures is not used: its series must exist before any failure.
	p.InsertLatency.Record(time.Millisecond)
	p.AckLatency.Record(time.Millisecond)
	p.WorkerReady.Update(1)
	p.StuckRecords.Update(0)
	p.InFlight.Update(1)
	time.Sleep(1100 * time.Millisecond) // the root scope reports every second
	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	_ = reg.Close()
	served := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		served[name] = true
	}

	var exprs []string
	for _, r := range loadRules(t) {
		exprs = append(exprs, r.Expr)
	}
	d, err := LoadDashboard(filepath.Join(root(t), DashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range d.Queries() {
		exprs = append(exprs, q.Expr)
	}
	for _, name := range MetricNames(exprs...) {
		if strings.HasPrefix(name, "syncbridge_") && !served[name] {
			t.Errorf("%s is used by the rules or dashboard but the worker does not serve it", name)
		}
	}
}

func TestMetricNamesAndOperands(t *testing.T) {
	got := MetricNames(`sum(rate(syncbridge_records_total{outcome="conflict"}[5m])) / on() up{job="x"} + temporal_a_b_seconds_bucket`)
	want := []string{"syncbridge_records_total", "temporal_a_b_seconds_bucket", "up"}
	if !slices.Equal(got, want) {
		t.Errorf("MetricNames = %v, want %v", got, want)
	}
	ops := Operands("(sum(rate(a[10m])) + sum(rate(b[10m]))) > 0\nand sum(rate(c[10m])) == 0")
	wantOps := []string{"sum(rate(a[10m])) + sum(rate(b[10m]))", "sum(rate(c[10m]))"}
	if !slices.Equal(ops, wantOps) {
		t.Errorf("Operands = %q, want %q", ops, wantOps)
	}
	if ops := Operands(`histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) > 2`); len(ops) != 1 || ops[0] != `histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))` {
		t.Errorf("Operands(histogram) = %q", ops)
	}
}
