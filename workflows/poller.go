package workflows

import (
	"errors"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
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

	// pollQueueChange gates the poll queue: executions started before it
	// (no marker in their history) keep scheduling Poll on the workflow's
	// own task queue until they continue as new.
	pollQueueChange = "poll-queue"
	// PollQueueWait is how long a poll waits on the poll queue for a free
	// slot before it is scheduled on the main task queue instead (its
	// ScheduleToStart timeout there). Matching hands a task to a waiting
	// poller within milliseconds, so a poll still unstarted after this
	// long has no worker with a free poll slot: more pollers than workers
	// (every worker's single slot is busy), or a rolled-back build that
	// runs no poll-queue worker at all. ScheduleToStart covers only the
	// wait before a start: a poll that started runs its full RunFor. It
	// is short because a lone worker (the default: one worker, two
	// pollers) loses it at start and every other run of its second
	// poller (at a second, flood mode's benchmark drain of 30,000
	// messages in about 3 s ran on one poller for a third of its time);
	// a poll that only missed a slot by a hiccup (a slow match, a
	// server restart) just runs on the main queue for one run.
	PollQueueWait = 250 * time.Millisecond
)

// PollerWorkflow keeps one poller activity running for a topic/group. The
// activity does the draining; the workflow restarts it after each run or
// failure and continues as new every RunsBeforeContinue runs so its history
// stays bounded. A SignalStopPoller signal ends it after the current run,
// whose batch in hand is handed over first.
//
// Where the poll runs decides where the drain's work goes (records start
// eagerly on the worker whose poll handed them over), so polls are spread
// over the workers: each poll is first offered on the poll queue
// (contract.PollTaskQueue), where every worker has exactly one slot. A
// worker whose slot is taken does not poll that queue at all, so a new
// poll goes to a worker that runs none, and with at least as many workers
// as pollers every worker runs one. A poll nobody takes within
// PollQueueWait (more pollers than workers, or no worker serving the poll
// queue) runs on the main task queue, on any worker, as before the poll
// queue existed (in a new run, see below); the run's next poll is offered
// on the poll queue again.
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
	// Nil for executions started before the poll queue: they poll on the
	// main task queue only.
	var pollQueueCtx workflow.Context
	if workflow.GetVersion(ctx, pollQueueChange, workflow.DefaultVersion, 1) >= 1 {
		pollQueueCtx = workflow.WithTaskQueue(actx, contract.PollTaskQueue(workflow.GetInfo(ctx).TaskQueueName))
		pollQueueCtx = workflow.WithScheduleToStartTimeout(pollQueueCtx, PollQueueWait)
	}
	pin := activities.PollInput{Topic: in.Topic, Group: in.Group, RunFor: runFor}
	// poll runs one poll activity to its end. On stop the activity is
	// cancelled; it finishes the batch in hand before returning, so no
	// message is left half-processed.
	poll := func(octx workflow.Context) error {
		runCtx, cancel := workflow.WithCancel(octx)
		fut := workflow.ExecuteActivity(runCtx, a.Poll, pin)
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
		return fut.Get(ctx, nil)
	}
	// A poll that found no free poll slot ends the run, and the next run
	// polls on the main task queue first. Retrying it on the main queue
	// within this run would be simpler, but a build from before the poll
	// queue replaying such a history (a rollback moves the running pollers
	// onto it) would fail the poll's timeout where the history goes on
	// with another poll: a non-determinism error on every workflow task,
	// a poller stuck until someone terminates it. It replays a history
	// whose polls all started (their task queue is not compared), and a
	// run that ends right after the timeout is never replayed.
	noSlot := false
	for i := 0; i < runs && !stopped && !noSlot; i++ {
		octx := actx
		if pollQueueCtx != nil && !(i == 0 && in.MainQueueFirst) {
			octx = pollQueueCtx
		}
		err := poll(octx)
		if octx == pollQueueCtx && !stopped && isScheduleToStartTimeout(err) {
			workflow.GetLogger(ctx).Info("no free poll slot on the poll queue: the next run polls on the main task queue first", "index", in.Index, "waited", PollQueueWait)
			noSlot = true
			continue
		}
		if err != nil && !(stopped && temporal.IsCanceledError(err)) {
			return err
		}
	}
	if stopped || stopCh.ReceiveAsync(nil) {
		workflow.GetLogger(ctx).Info("poller stopped by signal", "topic", in.Topic, "group", in.Group, "index", in.Index)
		return nil
	}
	next := in
	next.MainQueueFirst = noSlot
	return workflow.NewContinueAsNewError(ctx, PollerWorkflow, next)
}

func isScheduleToStartTimeout(err error) bool {
	var te *temporal.TimeoutError
	return errors.As(err, &te) && te.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START
}
