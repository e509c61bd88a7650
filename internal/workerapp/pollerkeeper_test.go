package workerapp

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/testwait"
)

func pollerStatus(t *testing.T, p *pipe, i int) enumspb.WorkflowExecutionStatus {
	t.Helper()
	cfg := p.config()
	d, err := p.env.Client.DescribeWorkflowExecution(context.Background(), contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, i), "")
	if err != nil {
		return enumspb.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED
	}
	return d.GetWorkflowExecutionInfo().GetStatus()
}

// A poller that dies is started again by the running worker, without a
// worker restart; one the operator stopped is not.
func TestKeeperRestartsFailedPollerButNotStoppedOne(t *testing.T) {
	p := newPipe(t, mqemu.Config{}, map[string]string{"SYNCBRIDGE_POLLERS": "1"})
	p.worker(Options{PollerKeepEvery: time.Second})
	running := func() bool { return pollerStatus(t, p, 0) == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING }
	testwait.Until(t, 30*time.Second, "poller running", running)

	cfg := p.config()
	id := contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, 0)
	if err := p.env.Client.TerminateWorkflow(context.Background(), id, "", "simulated poller failure"); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 30*time.Second, "terminated poller restarted by the keeper", running)

	// The operator's stop intent, as `starter pollers stop` records it.
	db, err := store.Open(context.Background(), cfg.DB.DSN, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := store.New(db).SetPollersStopped(context.Background(), cfg.MQ.Topic, cfg.MQ.Group, true); err != nil {
		t.Fatal(err)
	}
	if err := p.env.Client.TerminateWorkflow(context.Background(), id, "", "stopped"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // several keeper rounds
	if s := pollerStatus(t, p, 0); s == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatal("keeper restarted a poller the operator stopped")
	}
}

// Two pipelines in one namespace: a second one configured onto the first
// one's task queue or record workflow ID prefix refuses to start; with its
// own, it runs beside the first.
func TestSecondPipelineSharingTaskQueueOrPrefixRefused(t *testing.T) {
	a := newPipe(t, mqemu.Config{}, map[string]string{"SYNCBRIDGE_POLLERS": "1"})
	a.worker(Options{})
	testwait.Until(t, 30*time.Second, "pipeline A's poller", func() bool {
		return pollerStatus(t, a, 0) == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	})

	run := func(b *pipe) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done := make(chan error, 1)
		ready := make(chan struct{})
		go func() {
			done <- Run(ctx, b.config(), Options{Logger: b.env.Logger, PollRunFor: 20 * time.Second, Ready: func(string) { close(ready) }})
		}()
		select {
		case err := <-done:
			return err
		case <-ready:
			cancel()
			<-done
			return nil
		}
	}
	b := newPipe(t, mqemu.Config{}, map[string]string{"SYNCBRIDGE_POLLERS": "1", "SYNCBRIDGE_TASK_QUEUE": a.env.TaskQueue})
	if err := run(b); err == nil || !strings.Contains(err.Error(), "SYNCBRIDGE_TASK_QUEUE") {
		t.Errorf("pipeline B on A's task queue: Run = %v, want a refusal naming SYNCBRIDGE_TASK_QUEUE", err)
	}
	// One fleet, one payload key: C reads A's (encrypted) memo. With
	// another key only the task queue can be compared (docs/operations.md, "Pollers").
	c := newPipe(t, mqemu.Config{}, map[string]string{"SYNCBRIDGE_POLLERS": "1", "SYNCBRIDGE_WORKFLOW_ID_PREFIX": a.prefix,
		"SYNCBRIDGE_PAYLOAD_KEY": a.env.PayloadKey, "SYNCBRIDGE_PAYLOAD_KEY_ID": a.env.PayloadKeyID})
	if err := run(c); err == nil || !strings.Contains(err.Error(), "SYNCBRIDGE_WORKFLOW_ID_PREFIX") {
		t.Errorf("pipeline C with A's prefix: Run = %v, want a refusal naming SYNCBRIDGE_WORKFLOW_ID_PREFIX", err)
	}
	d := newPipe(t, mqemu.Config{}, map[string]string{"SYNCBRIDGE_POLLERS": "1"})
	if err := run(d); err != nil {
		t.Errorf("pipeline D with its own queue and prefix: %v", err)
	}
	if pollerStatus(t, a, 0) != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Error("pipeline A's poller disturbed")
	}
}

func TestIsPollerOf(t *testing.T) {
	ours := "poller-t-g-"
	for id, want := range map[string]bool{"poller-t-g-0": true, "poller-t-g-12": true, "poller-t-g-2-0": false, "poller-t-g-": false, "poller-t-h-0": false} {
		if got := isPollerOf(id, ours); got != want {
			t.Errorf("isPollerOf(%q) = %v, want %v", id, got, want)
		}
	}
}

// A worker started while Temporal cannot start its pollers (restarting,
// answering slowly) keeps running and starts them once it can: the first
// round's failure is retried, not returned. Only a clash with another
// pipeline's configuration (above) stops the worker.
func TestKeeperRetriesAFailedFirstRound(t *testing.T) {
	p := newPipe(t, mqemu.Config{}, map[string]string{"SYNCBRIDGE_POLLERS": "1"})
	cfg := p.config()
	ctx := context.Background()
	db, err := store.Open(ctx, cfg.DB.DSN, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := store.New(db)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tc := &unavailableLister{Client: p.env.Client}
	tc.fails.Store(2)
	stop, err := keepPollers(ctx, tc, st, cfg, 20*time.Second, time.Minute, p.env.Logger)
	if err != nil {
		t.Fatalf("keepPollers gave up on a passing failure: %v", err)
	}
	defer stop()
	t.Cleanup(func() {
		_ = p.env.Client.TerminateWorkflow(context.Background(), contract.PollerWorkflowID(cfg.MQ.Topic, cfg.MQ.Group, 0), "", "test over")
	})
	if s := pollerStatus(t, p, 0); s == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatal("poller running although its start failed")
	}
	// The periodic round is a minute away: only the first round's retry
	// can start the poller within the wait.
	testwait.Until(t, 30*time.Second, "the poller started by the retried first round", func() bool {
		return pollerStatus(t, p, 0) == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	})
	if n := tc.fails.Load(); n > 0 {
		t.Fatalf("%d injected failures left unseen", n)
	}
}

// unavailableLister answers its first calls to ListWorkflow as Temporal
// does while it restarts.
type unavailableLister struct {
	client.Client
	fails atomic.Int32
}

func (u *unavailableLister) ListWorkflow(ctx context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	if u.fails.Add(-1) >= 0 {
		return nil, serviceerror.NewUnavailable("Temporal is restarting")
	}
	return u.Client.ListWorkflow(ctx, req)
}
