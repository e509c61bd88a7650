package workerapp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/monitoring"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/testenv"
	"github.com/syncbridge/syncbridge/internal/testwait"
)

// A real Prometheus scrapes a worker through a small drain with broker
// faults (so the error, refusal and quarantine series exist too) and
// evaluates the shipped alert rules. Every metric and every query of the
// rules and the dashboard must then return data through Prometheus's HTTP
// API: a query naming a metric the worker does not emit fails here.
func TestPrometheusScrapesEveryMetricTheRulesAndDashboardUse(t *testing.T) {
	promBin := requirePrometheus(t)
	root, err := monitoring.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := monitoring.LoadRules(filepath.Join(root, monitoring.AlertsFile))
	if err != nil {
		t.Fatal(err)
	}
	dash, err := monitoring.LoadDashboard(filepath.Join(root, monitoring.DashboardFile))
	if err != nil {
		t.Fatal(err)
	}

	p := newPipe(t, mqemu.Config{InvisibleTime: 20 * time.Second, Seed: 11}, map[string]string{"SYNCBRIDGE_POLLERS": "1", "SYNCBRIDGE_HEALTH_INTERVAL": "1s"})
	msgs := generate(syncevent.GenOptions{Count: 60, DistinctKeys: 40, ChangedRate: 0.5, BadRate: 0.1, Seed: 5, KeyPrefix: "prom-"})
	p.publish(msgs)
	// Faults only after publishing: the producer does not retry. The error
	// rate is high on purpose: the SDK records activity schedule-to-start
	// only for activity tasks dispatched through matching, and with eager
	// activity execution (the server's default) first attempts bypass it;
	// failed AckMessage calls make Ack retries, which do not.
	p.env.MQ.SetFaults(mqemu.Faults{DuplicateRate: 0.2, ExpireRate: 0.15, ErrorRate: 0.3})
	w := p.worker(Options{StuckAfter: time.Millisecond, StuckSampleEvery: 300 * time.Millisecond})

	prom := startPrometheus(t, promBin, w.metricsAddr, filepath.Join(root, monitoring.AlertsFile))
	// Lean records finish in milliseconds; one started by hand without a
	// delivery waits for one, so the stuck gauge has something to count
	// until it is given its delivery.
	held := generate(syncevent.GenOptions{Count: 1, Seed: 77, KeyPrefix: "prom-held-"})[0]
	heldID := contract.RecordWorkflowID(p.prefix, held.Key)
	if _, err := p.env.Client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: heldID, TaskQueue: p.env.TaskQueue},
		contract.RecordWorkflowV2Name, contract.RecordInput{Key: held.Key, Topic: p.env.Topic, Group: p.env.Group}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, time.Minute, "the held record in the stuck gauge", func() bool {
		return prom.count(t, `syncbridge_stuck_records > 0`) > 0
	})
	if err := p.env.Client.SignalWorkflow(context.Background(), heldID, "", contract.SignalDelivery,
		contract.Delivery{MessageID: "held-1", ReceiptHandle: "held-handle", Tag: held.Tag, Body: held.Body, ConsumedTimes: 1}); err != nil {
		t.Fatal(err)
	}
	p.waitDrained(len(msgs), 5*time.Minute)
	p.env.MQ.SetFaults(mqemu.Faults{})
	// A few more scrapes after the drain, so every rate() window holds two
	// samples of every series.
	time.Sleep(4 * time.Second)
	if t.Failed() {
		return
	}

	var exprs []string
	for _, r := range rules {
		exprs = append(exprs, r.Expr)
	}
	for _, q := range dash.Queries() {
		exprs = append(exprs, q.Expr)
	}
	names := monitoring.MetricNames(exprs...)
	if len(names) < 10 {
		t.Fatalf("only %d metric names found in the rules and dashboard: %v", len(names), names)
	}
	missing := false
	for _, name := range names {
		if n := prom.count(t, fmt.Sprintf(`{__name__=%q}`, name)); n == 0 {
			missing = true
			t.Errorf("metric %s, used by the rules or the dashboard, has no data in Prometheus", name)
		}
	}
	if missing {
		var have []string
		prom.api(t, "/api/v1/label/__name__/values", nil, &have)
		t.Logf("metrics Prometheus has: %v", have)
	}
	for _, r := range rules {
		for _, op := range monitoring.Operands(r.Expr) {
			if n := prom.count(t, op); n == 0 {
				t.Errorf("alert %s: %q returns no data", r.Alert, op)
			}
		}
	}
	for _, q := range dash.Queries() {
		e := monitoring.GrafanaVars(q.Expr)
		if n := prom.count(t, e); n == 0 {
			t.Errorf("dashboard panel %q: %q returns no data", q.Panel, e)
		}
	}
	// The two gauges this change added carry the right values: records
	// were running (for longer than the 1 ms test threshold) during the
	// drain and none after it; the worker reported ready.
	if prom.count(t, `max_over_time(syncbridge_stuck_records[5m]) > 0`) == 0 {
		t.Error("syncbridge_stuck_records never rose above 0 during the drain")
	}
	testwait.Until(t, 10*time.Second, "stuck records back to 0", func() bool {
		return prom.count(t, `syncbridge_stuck_records == 0`) == 1
	})
	// The broker faults of the drain may have failed the last readiness
	// round; with them cleared the next rounds (every second here) must
	// report ready.
	testwait.Until(t, 20*time.Second, "syncbridge_worker_ready == 1 once the broker faults are cleared", func() bool {
		return prom.count(t, `syncbridge_worker_ready == 1`) == 1
	})

	// Prometheus evaluated every shipped rule without error.
	var rr struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	prom.api(t, "/api/v1/rules", nil, &rr)
	evaluated := 0
	for _, g := range rr.Groups {
		for _, r := range g.Rules {
			evaluated++
			if r.Health != "ok" {
				t.Errorf("rule %s: health %q, error %q", r.Name, r.Health, r.LastError)
			}
		}
	}
	if evaluated != len(rules) {
		t.Errorf("Prometheus loaded %d rules, the file has %d", evaluated, len(rules))
	}
}

// requirePrometheus returns the prometheus binary. scripts/test.sh
// installs it and sets PROMETHEUS_REQUIRED=1, so there the test fails
// rather than skips without it.
func requirePrometheus(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("PROMETHEUS_REQUIRED") != "" {
			t.Fatal("prometheus is not installed (scripts/ensure-services.sh installs Debian's prometheus package)")
		}
		t.Skip("prometheus not installed; scripts/ensure-services.sh installs it")
	}
	return bin
}

type promServer struct{ base string }

// startPrometheus runs a Prometheus scraping target every second and
// evaluating ruleFile, on a free port (Prometheus cannot listen on port 0
// and report the port it got).
func startPrometheus(t *testing.T, bin, target, ruleFile string) *promServer {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: syncbridge-worker
    static_configs:
      - targets: [%q]
`, ruleFile, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var srv *promServer
	for attempt := 0; attempt < 3 && srv == nil; attempt++ {
		addr := testenv.FreeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, bin,
			"--config.file="+cfgPath,
			"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data%d", attempt)),
			"--web.listen-address="+addr,
			"--log.level=warn",
		)
		logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("start prometheus: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() { cancel(); <-exited; logf.Close() }
		base := "http://" + addr
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				deadline = time.Time{} // lost the port race: try another
				continue
			default:
			}
			if resp, err := http.Get(base + "/-/ready"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					srv = &promServer{base: base}
					t.Cleanup(stop)
					break
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		if srv == nil {
			stop()
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus on %s did not become ready:\n%s", addr, b)
		}
	}
	if srv == nil {
		t.Fatal("prometheus did not start")
	}
	return srv
}

// api GETs a Prometheus API path and decodes its data field into out.
func (s *promServer) api(t *testing.T, path string, q url.Values, out any) {
	t.Helper()
	u := s.base + path
	if q != nil {
		u += "?" + q.Encode()
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("prometheus %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("prometheus %s: %v: %s", path, err, body)
	}
	if env.Status != "success" {
		t.Errorf("prometheus %s %v: %s", path, q, env.Error)
		return
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		t.Fatalf("prometheus %s data: %v", path, err)
	}
}

// count runs an instant query and returns how many series it returned
// (an error in the query fails the test).
func (s *promServer) count(t *testing.T, expr string) int {
	t.Helper()
	var data struct {
		Result []json.RawMessage `json:"result"`
	}
	s.api(t, "/api/v1/query", url.Values{"query": {expr}}, &data)
	return len(data.Result)
}
