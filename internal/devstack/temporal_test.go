package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc"

	"github.com/syncbridge/syncbridge/internal/searchattr"
)

// testLogger sends logs to the test's output, shown on failure or with -v.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func dial(t testing.TB, tp *Temporal) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{
		HostPort:  tp.Address(),
		Namespace: tp.Namespace(),
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		t.Fatalf("dial %s: %v", tp.Address(), err)
	}
	t.Cleanup(c.Close)
	return c
}

// outcomeWorkflow records its outcome the way the pipeline does, so the test
// proves the pre-registered attribute is writable and queryable.
func outcomeWorkflow(ctx workflow.Context, outcome string) (string, error) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, searchattr.Outcome.ValueSet(outcome)); err != nil {
		return "", err
	}
	return "recorded " + outcome, nil
}

func startWorker(t testing.TB, c client.Client, queue string, register func(worker.Registry)) {
	t.Helper()
	w := worker.New(c, queue, worker.Options{})
	register(w)
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(w.Stop)
}

// waitVisible polls the visibility store (eventually consistent) until query
// returns want workflow IDs.
func waitVisible(t testing.TB, c client.Client, query string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := c.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		if err != nil {
			t.Fatalf("list %q: %v", query, err)
		}
		got := map[string]bool{}
		for _, e := range resp.GetExecutions() {
			got[e.GetExecution().GetWorkflowId()] = true
		}
		missing := 0
		for _, id := range want {
			if !got[id] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("query %q: want %v, got %v", query, want, got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestTemporalRunsWorkflowsAndServesWebUI(t *testing.T) {
	skipShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	tp, err := StartTemporal(ctx, TemporalOptions{
		FrontendAddr:     "127.0.0.1:0",
		UIAddr:           "127.0.0.1:0",
		SearchAttributes: searchattr.All(),
		Logger:           testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tp.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	t.Logf("temporal with UI up in %v at %s, UI %s", time.Since(start).Round(time.Millisecond), tp.Address(), tp.UIURL())
	if tp.Namespace() != "default" || tp.UIURL() == "" || tp.DBPath() != "" {
		t.Fatalf("namespace %q, UI %q, db %q", tp.Namespace(), tp.UIURL(), tp.DBPath())
	}

	c := dial(t, tp)
	sa, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for name, typ := range searchattr.All() {
		if got := sa.GetCustomAttributes()[name]; got != typ {
			t.Errorf("search attribute %s: %v, want %v", name, got, typ)
		}
	}

	queue := "devstack-temporal-test"
	startWorker(t, c, queue, func(r worker.Registry) { r.RegisterWorkflow(outcomeWorkflow) })
	ids := []string{"patient-sync-inserted-1", "patient-sync-duplicate-2"}
	outcomes := []string{"inserted", "duplicate"}
	for i, id := range ids {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, outcomeWorkflow, outcomes[i])
		if err != nil {
			t.Fatal(err)
		}
		var got string
		if err := run.Get(ctx, &got); err != nil {
			t.Fatalf("workflow %s: %v", id, err)
		}
		if got != "recorded "+outcomes[i] {
			t.Fatalf("workflow %s returned %q", id, got)
		}
		desc, err := c.DescribeWorkflowExecution(ctx, id, run.GetRunID())
		if err != nil {
			t.Fatal(err)
		}
		if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
			t.Fatalf("workflow %s status %v", id, st)
		}
	}
	waitVisible(t, c, "SyncOutcome = 'inserted'", ids[0])
	waitVisible(t, c, "WorkflowType = 'outcomeWorkflow'", ids...)

	t.Run("html", func(t *testing.T) {
		body, ctype := httpGet(t, tp.UIURL()+"/namespaces/default/workflows")
		if !strings.HasPrefix(ctype, "text/html") || !strings.Contains(strings.ToLower(body), "<html") {
			t.Fatalf("UI page: content-type %q, body starts %q", ctype, head(body))
		}
	})
	t.Run("api proxy", func(t *testing.T) {
		body, ctype := httpGet(t, tp.UIURL()+"/api/v1/namespaces/default/workflows")
		if !strings.HasPrefix(ctype, "application/json") {
			t.Fatalf("content-type %q, body %q", ctype, head(body))
		}
		var list struct {
			Executions []struct {
				Execution struct {
					WorkflowID string `json:"workflowId"`
				} `json:"execution"`
			} `json:"executions"`
		}
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatalf("decode %q: %v", head(body), err)
		}
		got := map[string]bool{}
		for _, e := range list.Executions {
			got[e.Execution.WorkflowID] = true
		}
		for _, id := range ids {
			if !got[id] {
				t.Errorf("UI API lists %v, missing %s", got, id)
			}
		}
		saBody, _ := httpGet(t, tp.UIURL()+"/api/v1/namespaces/default/search-attributes")
		if !strings.Contains(saBody, "SyncOutcome") {
			t.Errorf("UI search attributes %q lack SyncOutcome", head(saBody))
		}
	})
	t.Run("chromium", func(t *testing.T) {
		out := os.Getenv("DEVSTACK_UI_SCREENSHOT")
		if out == "" {
			out = filepath.Join(t.TempDir(), "workflows.png")
		}
		args := append([]string{filepath.Join("..", "..", "scripts", "ui-check.sh"),
			tp.UIURL() + "/namespaces/default/workflows", out}, ids...)
		cmd := exec.CommandContext(ctx, "bash", args...)
		output, err := cmd.CombinedOutput()
		t.Logf("ui-check.sh:\n%s", output)
		if err != nil {
			t.Fatalf("ui-check.sh: %v", err)
		}
		if strings.HasPrefix(string(output), "SKIP") {
			t.Skip("chromium absent")
		}

		// The same page without a workflow that does not exist must fail,
		// or the check above proves nothing.
		bogus := "no-such-workflow-7f3a"
		cmd = exec.CommandContext(ctx, "bash", filepath.Join("..", "..", "scripts", "ui-check.sh"),
			tp.UIURL()+"/namespaces/default/workflows", filepath.Join(t.TempDir(), "neg.png"), ids[0], bogus)
		cmd.Env = append(os.Environ(), "UI_CHECK_BUDGET_MS=5000")
		output, err = cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(output), bogus) {
			t.Fatalf("ui-check.sh with a missing text: want exit 1 naming %s, got %v:\n%s", bogus, err, output)
		}
	})
}

func TestUICheckScriptWithoutChromium(t *testing.T) {
	script := filepath.Join("..", "..", "scripts", "ui-check.sh")
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	run := func(required string) (string, int) {
		cmd := exec.Command(bash, script, "http://127.0.0.1:1/", filepath.Join(t.TempDir(), "x.png"), "text")
		// No PATH entry holds a browser, so the script must notice it has none.
		cmd.Env = []string{"PATH=" + t.TempDir(), "UI_CHECK_REQUIRED=" + required}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return string(out), exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if out, code := run(""); code != 0 || !strings.HasPrefix(out, "SKIP") {
		t.Errorf("not required: exit %d, output %q; want 0 and SKIP", code, out)
	}
	if out, code := run("1"); code != 2 || !strings.Contains(out, "FAIL") {
		t.Errorf("required: exit %d, output %q; want 2 and FAIL", code, out)
	}
	cmd := exec.Command(bash, script, "http://127.0.0.1:1/")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "usage") {
		t.Errorf("missing arguments: want usage error, got %v %q", err, out)
	}
}

func httpGet(t *testing.T, url string) (body, contentType string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, head(string(b)))
	}
	return string(b), resp.Header.Get("Content-Type")
}

func head(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

func TestStartTemporalRefusesBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = StartTemporal(context.Background(), TemporalOptions{FrontendAddr: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) || !strings.Contains(err.Error(), "not available") {
		t.Fatalf("want a clear port-in-use error naming %s, got %v", ln.Addr(), err)
	}
	_, err = StartTemporal(context.Background(), TemporalOptions{FrontendAddr: "127.0.0.1:0", UIAddr: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "Web UI") {
		t.Fatalf("want a clear UI port error, got %v", err)
	}
}

// The restart test runs the first life in a child process, so the second
// life reopens the SQLite file from disk rather than through connections the
// driver kept open in this process.
const (
	restartDBEnv  = "DEVSTACK_RESTART_DB"
	restartOutEnv = "DEVSTACK_RESTART_OUT"
)

// waitingWorkflow marks itself as waiting, blocks until the "finish" signal
// and then records its outcome: a workflow that spans a server restart.
func waitingWorkflow(ctx workflow.Context) (string, error) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, stageKey.ValueSet("waiting")); err != nil {
		return "", err
	}
	var outcome string
	workflow.GetSignalChannel(ctx, "finish").Receive(ctx, &outcome)
	if err := workflow.UpsertTypedSearchAttributes(ctx, searchattr.Outcome.ValueSet(outcome)); err != nil {
		return "", err
	}
	return "finished " + outcome, nil
}

const restartQueue = "devstack-restart-test"

// stageKey is a test-only attribute registered in the first life only.
var stageKey = temporal.NewSearchAttributeKeyKeyword("DevstackTestStage")

// secondLifeAttributes are the pipeline's attributes plus stageKey.
func secondLifeAttributes() map[string]enumspb.IndexedValueType {
	m := searchattr.All()
	m[stageKey.GetName()] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	return m
}

// TestRestartFirstLife is the child half of TestTemporalFileDBSurvivesRestart.
func TestRestartFirstLife(t *testing.T) {
	skipShort(t)
	path := os.Getenv(restartDBEnv)
	if path == "" {
		t.Skip("child process of TestTemporalFileDBSurvivesRestart only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Only Stage: the second life must add Outcome to an existing namespace.
	tp, err := StartTemporal(ctx, TemporalOptions{
		FrontendAddr:     "127.0.0.1:0",
		DBPath:           path,
		SearchAttributes: map[string]enumspb.IndexedValueType{stageKey.GetName(): enumspb.INDEXED_VALUE_TYPE_KEYWORD},
		Logger:           testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, tp)
	w := worker.New(c, restartQueue, worker.Options{})
	w.RegisterWorkflow(waitingWorkflow)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "survives-restart", TaskQueue: restartQueue}, waitingWorkflow)
	if err != nil {
		t.Fatal(err)
	}
	waitVisible(t, c, "DevstackTestStage = 'waiting'", "survives-restart")
	w.Stop()
	c.Close()
	if err := tp.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(os.Getenv(restartOutEnv), []byte(run.GetRunID()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestTemporalFileDBSurvivesRestart(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "temporal.db")
	out := filepath.Join(dir, "run-id")
	child := exec.Command(os.Args[0], "-test.run=^TestRestartFirstLife$", "-test.v")
	child.Env = append(os.Environ(), restartDBEnv+"="+path, restartOutEnv+"="+out)
	start := time.Now()
	output, err := child.CombinedOutput()
	if err != nil {
		t.Fatalf("first life: %v\n%s", err, output)
	}
	runID, err := os.ReadFile(out)
	if err != nil || len(runID) == 0 {
		t.Fatalf("first life left no run ID (%v):\n%s", err, output)
	}
	t.Logf("first life (child process) took %v", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tp, err := StartTemporal(ctx, TemporalOptions{
		FrontendAddr:     "127.0.0.1:0",
		DBPath:           path,
		SearchAttributes: secondLifeAttributes(),
		Logger:           testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tp.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	if tp.DBPath() != path {
		t.Errorf("DBPath %q, want %q", tp.DBPath(), path)
	}
	c := dial(t, tp)
	desc, err := c.DescribeWorkflowExecution(ctx, "survives-restart", string(runID))
	if err != nil {
		t.Fatalf("workflow from the first life is gone: %v", err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("status after restart %v, want running", st)
	}

	// Finishing it replays the first life's history on a new worker and
	// writes the attribute registered only in this life.
	startWorker(t, c, restartQueue, func(r worker.Registry) { r.RegisterWorkflow(waitingWorkflow) })
	if err := c.SignalWorkflow(ctx, "survives-restart", string(runID), "finish", "inserted"); err != nil {
		t.Fatal(err)
	}
	var result string
	if err := c.GetWorkflow(ctx, "survives-restart", string(runID)).Get(ctx, &result); err != nil {
		t.Fatal(err)
	}
	if result != "finished inserted" {
		t.Fatalf("result %q", result)
	}
	waitVisible(t, c, "SyncOutcome = 'inserted' AND DevstackTestStage = 'waiting'", "survives-restart")
}

var twoAttributes = map[string]enumspb.IndexedValueType{
	"SyncOutcome": enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	"SyncStage":   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
}

func TestRegisterSearchAttributesRejectsTypeChange(t *testing.T) {
	err := registerSearchAttributes(context.Background(), fakeOperator{
		custom: map[string]enumspb.IndexedValueType{"SyncOutcome": enumspb.INDEXED_VALUE_TYPE_TEXT},
	}, "default", twoAttributes)
	if err == nil || !strings.Contains(err.Error(), "SyncOutcome") {
		t.Fatalf("want a type conflict error for SyncOutcome, got %v", err)
	}
	err = registerSearchAttributes(context.Background(), fakeOperator{
		system: map[string]enumspb.IndexedValueType{"SyncStage": enumspb.INDEXED_VALUE_TYPE_KEYWORD},
	}, "default", twoAttributes)
	if err == nil || !strings.Contains(err.Error(), "system attribute") {
		t.Fatalf("want a system attribute error, got %v", err)
	}
	var added map[string]enumspb.IndexedValueType
	op := fakeOperator{
		custom: map[string]enumspb.IndexedValueType{"SyncOutcome": enumspb.INDEXED_VALUE_TYPE_KEYWORD},
		added:  &added,
	}
	if err := registerSearchAttributes(context.Background(), op, "default", twoAttributes); err != nil {
		t.Fatal(err)
	}
	if len(added) != 1 || added["SyncStage"] != enumspb.INDEXED_VALUE_TYPE_KEYWORD {
		t.Fatalf("added %v, want only SyncStage", added)
	}
}

func TestSearchAttributeProbe(t *testing.T) {
	got := searchAttributeProbe(twoAttributes)
	if got != "`SyncOutcome` IS NULL AND `SyncStage` IS NULL" {
		t.Fatalf("probe %q", got)
	}
	if searchAttributeProbe(nil) != "" {
		t.Fatal("empty set must give the empty query")
	}
}

type fakeOperator struct {
	operatorservice.OperatorServiceClient
	custom, system map[string]enumspb.IndexedValueType
	added          *map[string]enumspb.IndexedValueType
}

func (f fakeOperator) ListSearchAttributes(context.Context, *operatorservice.ListSearchAttributesRequest, ...grpc.CallOption) (*operatorservice.ListSearchAttributesResponse, error) {
	return &operatorservice.ListSearchAttributesResponse{CustomAttributes: f.custom, SystemAttributes: f.system}, nil
}

func (f fakeOperator) AddSearchAttributes(_ context.Context, req *operatorservice.AddSearchAttributesRequest, _ ...grpc.CallOption) (*operatorservice.AddSearchAttributesResponse, error) {
	if f.added == nil {
		return nil, errors.New("unexpected AddSearchAttributes")
	}
	*f.added = req.GetSearchAttributes()
	return &operatorservice.AddSearchAttributesResponse{}, nil
}

// skipShort skips tests that start the embedded Temporal server: they take
// minutes under the race detector, and -short is for the unit tests.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the embedded Temporal server: skipped in -short mode")
	}
}
