package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/testenv"
	"github.com/syncbridge/syncbridge/internal/testwait"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// harness is one integration test's world: the package's Temporal server,
// a fresh database, its own emulator topic, task queue and workflow ID
// prefix, and the environment the starter and the worker read.
type harness struct {
	t      *testing.T
	env    *testenv.Env
	vars   map[string]string
	prefix string
	st     *store.Store
}

func newHarness(t *testing.T, mq mqemu.Config, vars map[string]string) *harness {
	t.Helper()
	// Encrypted, as in production, unless the test refreshes the recorded
	// histories: those are replayed by the workflows package without a key.
	env := testenv.New(t, testenv.Options{MQ: mq, Plaintext: os.Getenv(updateHistoryEnv) == "1"})
	env.OwnTopic(t)
	h := &harness{t: t, env: env, prefix: env.TaskQueue + "/"}
	overrides := map[string]string{"SYNCBRIDGE_METRICS_ADDR": "off", "SYNCBRIDGE_START_POLLERS": "false"}
	for k, v := range vars {
		overrides[k] = v
	}
	h.vars = env.WorkerVars(h.prefix, overrides)
	db, err := store.Open(context.Background(), env.DSN, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h.st = store.New(db)
	if err := h.st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Nothing of this test may outlive it on the shared server.
		ctx := context.Background()
		_ = env.Client.TerminateWorkflow(ctx, contract.ReconcileWorkflowID, "", "test over")
		cfg := h.config()
		for i := 0; i < 8; i++ {
			_ = env.Client.TerminateWorkflow(ctx, contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, i), "", "test over")
		}
	})
	return h
}

func (h *harness) getenv(k string) string { return h.vars[k] }

func (h *harness) config() config.Config {
	h.t.Helper()
	cfg, err := config.Load(h.getenv)
	if err != nil {
		h.t.Fatal(err)
	}
	return cfg
}

// starter runs the CLI in-process and returns its exit status and output.
func (h *harness) starter(args ...string) (int, string, string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, h.getenv, &out, &errOut)
	h.t.Logf("starter %s -> %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return code, out.String(), errOut.String()
}

func (h *harness) mustStarter(args ...string) string {
	h.t.Helper()
	code, out, errOut := h.starter(args...)
	if code != 0 {
		h.t.Fatalf("starter %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// worker runs workerapp.Run (the production wiring) until stop is called
// or the test ends.
func (h *harness) worker() (stop func()) {
	h.t.Helper()
	return h.workerWith(workerapp.Options{})
}

// workerWith is worker with o's test knobs (logger, run length and
// readiness are set here).
func (h *harness) workerWith(o workerapp.Options) (stop func()) {
	h.t.Helper()
	cfg := h.config()
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		o.Logger, o.PollRunFor, o.Ready = h.env.Logger, 20*time.Second, func(string) { close(ready) }
		done <- workerapp.Run(ctx, cfg, o)
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		h.t.Fatalf("worker exited at start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		h.t.Fatal("worker not ready after 60s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					h.t.Errorf("worker: %v", err)
				}
			case <-time.After(workerapp.StopTimeout + 30*time.Second):
				h.t.Error("worker did not stop")
			}
		})
	}
	h.t.Cleanup(stop)
	return stop
}

// startRecord starts a record workflow for key the way the poller does
// (signal-with-start with one delivery) and returns its run ID.
func (h *harness) startRecord(key string, d contract.Delivery) string {
	h.t.Helper()
	id := contract.RecordWorkflowID(h.prefix, key)
	run, err := h.env.Client.SignalWithStartWorkflow(context.Background(), id, contract.SignalDelivery, d, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                h.env.TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, contract.RecordWorkflowName, contract.RecordInput{Key: key, Topic: h.env.Topic, Group: h.env.Group})
	if err != nil {
		h.t.Fatal(err)
	}
	return run.GetRunID()
}

func (h *harness) latestRun(key string) (runID string, status enumspb.WorkflowExecutionStatus) {
	h.t.Helper()
	d, err := h.env.Client.DescribeWorkflowExecution(context.Background(), contract.RecordWorkflowID(h.prefix, key), "")
	if err != nil {
		h.t.Fatal(err)
	}
	info := d.GetWorkflowExecutionInfo()
	return info.GetExecution().GetRunId(), info.GetStatus()
}

// waitVisible waits until visibility answers query with n executions (it
// lags the server's state a little).
func (h *harness) waitVisible(query string, n int64) {
	h.t.Helper()
	testwait.Until(h.t, 30*time.Second, "visibility: "+query, func() bool {
		resp, err := h.env.Client.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{Query: query})
		return err == nil && resp.GetCount() == n
	})
}

func (h *harness) rows(key string) int {
	h.t.Helper()
	var n int
	if err := h.env.DB.QueryRow("SELECT COUNT(*) FROM patient_records WHERE local_record_id = ?", key).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

func body(patient, notes string) []byte {
	return []byte(`{"patientData":{"patientId":"` + patient + `","notes":"` + notes + `"},"deviceTimestamp":1732600000000}`)
}

func event(t *testing.T, key, msgID string, b []byte) syncevent.Event {
	t.Helper()
	ev, err := syncevent.Parse(key, msgID, b)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// updateHistoryEnv set to 1 saves the histories replayLive checks into
// workflows/testdata/operator, where workflows' replay test keeps them
// honest against later code changes.
const updateHistoryEnv = "SYNCBRIDGE_UPDATE_HISTORY"

// replayLive replays the latest run of workflowID, fetched from the real
// server, against the registered workflow code.
func (h *harness) replayLive(workflowID, saveAs string) {
	h.t.Helper()
	it := h.env.Client.GetWorkflowHistory(context.Background(), workflowID, "", false, 0)
	var hist historypb.History
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			h.t.Fatal(err)
		}
		hist.Events = append(hist.Events, ev)
	}
	r := h.replayer()
	workerapp.RegisterWorkflows(r)
	if err := r.ReplayWorkflowHistory(nil, &hist); err != nil {
		h.t.Fatalf("replay of %s (%d events): %v", workflowID, len(hist.Events), err)
	}
	if os.Getenv(updateHistoryEnv) == "1" {
		b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&hist)
		if err != nil {
			h.t.Fatal(err)
		}
		path := filepath.Join("..", "workflows", "testdata", "operator", saveAs)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			h.t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			h.t.Fatal(err)
		}
		h.t.Logf("wrote %s (%d events)", path, len(hist.Events))
	}
}

// replayer decodes with the test's key, as a worker would.
func (h *harness) replayer() worker.WorkflowReplayer {
	var o worker.WorkflowReplayerOptions
	if h.env.Codec != nil {
		o.DataConverter = h.env.Codec.DataConverter()
		o.FailureConverter = h.env.Codec.FailureConverter()
	}
	r, err := worker.NewWorkflowReplayerWithOptions(o)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}
