package workflows

import (
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/contract"
)

// A rollback to a build from before the poll queue moves the running
// pollers onto it (they auto-upgrade, and unversioned workers take any
// task). That build must replay what this one records while a run is in
// progress: polls on the poll queue, and a run polling on the main task
// queue first. (A run whose poll never started ends there, so it is never
// replayed; see PollerWorkflow.)
func TestBuildBeforePollQueueReplaysNewHistories(t *testing.T) {
	for _, f := range []string{"poller_poll_queue.json", "poller_poll_queue_main_first.json"} {
		t.Run(f, func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(pollerBeforePollQueue, workflow.RegisterOptions{Name: contract.PollerWorkflowName})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, filepath.Join("testdata", f)); err != nil {
				t.Fatalf("the build before the poll queue cannot replay %s: %v", f, err)
			}
		})
	}
}

// pollerBeforePollQueue is PollerWorkflow as built before the poll queue
// (commit f4ee3d4), kept for the test above.
func pollerBeforePollQueue(ctx workflow.Context, in contract.PollerInput) error {
	runs := in.RunsBeforeContinue
	if runs <= 0 {
		runs = defaultRunsBeforeContinue
	}
	runFor := in.PollRunFor
	if runFor <= 0 {
		runFor = defaultPollRunFor
	}
	stopCh := workflow.GetSignalChannel(ctx, contract.SignalStopPoller)
	stopped := false
	var a *activities.Activities
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: runFor + 2*time.Minute,
		HeartbeatTimeout:    activities.PollHeartbeatTimeout,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        pollRetryMax,
			NonRetryableErrorTypes: []string{contract.ErrTypeBadInput},
		},
	})
	for i := 0; i < runs && !stopped; i++ {
		// On stop the activity is cancelled; it finishes the batch in
		// hand before returning, so no message is left half-processed.
		runCtx, cancel := workflow.WithCancel(actx)
		fut := workflow.ExecuteActivity(runCtx, a.Poll, activities.PollInput{Topic: in.Topic, Group: in.Group, RunFor: runFor})
		done := false
		for !done {
			sel := workflow.NewSelector(ctx)
			sel.AddFuture(fut, func(workflow.Future) { done = true })
			sel.AddReceive(stopCh, func(c workflow.ReceiveChannel, _ bool) {
				c.Receive(ctx, nil)
				stopped = true
				cancel()
			})
			sel.Select(ctx)
		}
		cancel()
		if err := fut.Get(ctx, nil); err != nil && !(stopped && temporal.IsCanceledError(err)) {
			return err
		}
	}
	if stopped || stopCh.ReceiveAsync(nil) {
		workflow.GetLogger(ctx).Info("poller stopped by signal", "topic", in.Topic, "group", in.Group, "index", in.Index)
		return nil
	}
	return workflow.NewContinueAsNewError(ctx, pollerBeforePollQueue, in)
}
