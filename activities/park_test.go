package activities

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/uber-go/tally/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/metrics"
)

// oneKeyTemporal plays the Temporal calls of a hand-over for a single key:
// one run at a time, started by ExecuteWorkflow, closed by the test.
type oneKeyTemporal struct {
	client.Client // nil: any other call panics
	mu            sync.Mutex
	running       bool
	started       []string // message IDs that started a run, in order
	signalled     []string // message IDs signalled to a running run
}

func (c *oneKeyTemporal) ExecuteWorkflow(_ context.Context, _ client.StartWorkflowOptions, _ any, args ...any) (client.WorkflowRun, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return nil, serviceerror.NewWorkflowExecutionAlreadyStarted("running", "", "")
	}
	c.running = true
	c.started = append(c.started, args[0].(contract.RecordInput).Initial[0].MessageID)
	return nil, nil
}

func (c *oneKeyTemporal) SignalWorkflow(_ context.Context, _, _, _ string, arg any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return serviceerror.NewNotFound("closed")
	}
	c.signalled = append(c.signalled, arg.(contract.Delivery).MessageID)
	return nil
}

func (c *oneKeyTemporal) DescribeWorkflowExecution(context.Context, string, string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	status := enumspb.WORKFLOW_EXECUTION_STATUS_FAILED
	if c.running {
		status = enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{
		WorkflowExecutionInfo: &workflowpb.WorkflowExecutionInfo{Status: status},
	}, nil
}

// A message parked behind a running run keeps its place: when that run
// fails before the message is handed over again, the key's next message
// must not start the new run ahead of it (it would make the later version
// the row and the earlier one a conflict).
func TestParkedMessageIsNotOvertaken(t *testing.T) {
	tc := &oneKeyTemporal{running: true}
	a := &Activities{
		Temporal: tc,
		Settings: Settings{ParkFor: 2 * time.Second},
		Metrics:  metrics.NewPipeline(tally.NoopScope),
	}
	ctx := context.Background()
	reuse := enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY
	if err := a.startOrSignal(ctx, "k", contract.Delivery{MessageID: "m1"}, reuse); err != nil {
		t.Fatal(err)
	}
	if !a.hasParked("k") {
		t.Fatal("m1 was not parked behind the running run")
	}
	tc.mu.Lock()
	tc.running = false // the run fails
	tc.mu.Unlock()
	if err := a.startOrSignal(ctx, "k", contract.Delivery{MessageID: "m2"}, reuse); err != nil {
		t.Fatal(err)
	}
	a.waitParked()

	tc.mu.Lock()
	defer tc.mu.Unlock()
	if len(tc.started) != 1 || tc.started[0] != "m1" || len(tc.signalled) != 1 || tc.signalled[0] != "m2" {
		t.Fatalf("started %v, signalled %v; want m1 to start the new run and m2 to follow it", tc.started, tc.signalled)
	}
}
