package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/contract"
)

const (
	defaultRunsBeforeContinue = 50
	defaultPollRunFor         = 5 * time.Minute
	// pollRetryMax bounds the wait between poll attempts. A poll fails
	// for passing reasons (its worker died, a heartbeat went unanswered);
	// a long backoff after a few of those stalled the drain.
	pollRetryMax = 5 * time.Second
)

// PollerWorkflow keeps one poller activity running for a topic/group. The
// activity does the draining; the workflow restarts it after each run or
// failure and continues as new every RunsBeforeContinue runs so its history
// stays bounded. A SignalStopPoller signal ends it after the current run,
// whose batch in hand is handed over first.
func PollerWorkflow(ctx workflow.Context, in contract.PollerInput) error {
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
	return workflow.NewContinueAsNewError(ctx, PollerWorkflow, in)
}
