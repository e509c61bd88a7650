package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/contract"
)

func newPollerEnv() (*testsuite.TestWorkflowEnvironment, *activities.Activities) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	a := &activities.Activities{}
	env.RegisterActivity(a)
	env.RegisterWorkflow(PollerWorkflow)
	return env, a
}

func TestPollerContinuesAsNewAfterRuns(t *testing.T) {
	env, a := newPollerEnv()
	runs := 0
	env.OnActivity(a.Poll, mock.Anything, activities.PollInput{Topic: "t", Group: "g", RunFor: time.Minute}).
		Return(func(context.Context, activities.PollInput) (activities.PollResult, error) {
			runs++
			return activities.PollResult{Batches: 1}, nil
		})
	env.ExecuteWorkflow(PollerWorkflow, contract.PollerInput{Topic: "t", Group: "g", RunsBeforeContinue: 3, PollRunFor: time.Minute})
	require.True(t, env.IsWorkflowCompleted())
	require.Equal(t, 3, runs)
	require.True(t, workflow.IsContinueAsNewError(env.GetWorkflowError()), "want continue-as-new, got %v", env.GetWorkflowError())
}

// A stop signal cancels the running poll (which finishes its batch) and
// ends the workflow instead of continuing as new.
func TestPollerStopsOnSignal(t *testing.T) {
	env, a := newPollerEnv()
	runs := 0
	env.OnActivity(a.Poll, mock.Anything, mock.Anything).After(time.Hour).
		Return(func(context.Context, activities.PollInput) (activities.PollResult, error) {
			runs++
			return activities.PollResult{}, nil
		})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalStopPoller, nil) }, 10*time.Second)
	env.ExecuteWorkflow(PollerWorkflow, contract.PollerInput{Topic: "t", Group: "g", RunsBeforeContinue: 5, PollRunFor: time.Hour})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError(), "a stopped poller completes; it does not continue as new")
	require.LessOrEqual(t, runs, 1, "no poll may start after the stop")
}

// New executions offer each poll on the poll queue first. A poll nobody
// takes there before its ScheduleToStart timeout ends the run, and the next
// run polls on the workflow's own task queue first, then on the poll queue
// again.
func TestPollerFallsBackToMainQueue(t *testing.T) {
	const main = "default-test-taskqueue"
	poll := contract.PollTaskQueue(main)
	run := func(in contract.PollerInput, timeOutFirst bool) ([]string, error) {
		env, a := newPollerEnv()
		var queues []string
		env.OnActivity(a.Poll, mock.Anything, mock.Anything).
			Return(func(ctx context.Context, _ activities.PollInput) (activities.PollResult, error) {
				q := activity.GetInfo(ctx).TaskQueue
				queues = append(queues, q)
				if timeOutFirst && len(queues) == 1 {
					return activities.PollResult{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)
				}
				return activities.PollResult{Batches: 1}, nil
			})
		env.ExecuteWorkflow(PollerWorkflow, in)
		require.True(t, env.IsWorkflowCompleted())
		return queues, env.GetWorkflowError()
	}
	in := contract.PollerInput{Topic: "t", Group: "g", RunsBeforeContinue: 3, PollRunFor: time.Minute}

	queues, err := run(in, true)
	require.Equal(t, []string{poll}, queues, "the run ends at the timeout")
	next := continuedWith(t, err)
	want := in
	want.MainQueueFirst = true
	require.Equal(t, want, next)

	queues, err = run(next, false)
	require.Equal(t, []string{main, poll, poll}, queues)
	require.False(t, continuedWith(t, err).MainQueueFirst, "a run whose polls all started clears MainQueueFirst")
}

func continuedWith(t *testing.T, err error) contract.PollerInput {
	t.Helper()
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, err, &can)
	var in contract.PollerInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &in))
	return in
}

// Any other failure of a poll on the poll queue fails the workflow as it
// did before (the keeper starts it again): only a poll that never started
// moves to the main task queue.
func TestPollerOnlyScheduleToStartFallsBack(t *testing.T) {
	env, a := newPollerEnv()
	var queues []string
	env.OnActivity(a.Poll, mock.Anything, mock.Anything).
		Return(func(ctx context.Context, _ activities.PollInput) (activities.PollResult, error) {
			queues = append(queues, activity.GetInfo(ctx).TaskQueue)
			return activities.PollResult{}, temporal.NewNonRetryableApplicationError("bad", contract.ErrTypeBadInput, nil)
		})
	env.ExecuteWorkflow(PollerWorkflow, contract.PollerInput{Topic: "t", Group: "g", RunsBeforeContinue: 2, PollRunFor: time.Minute})
	require.True(t, env.IsWorkflowCompleted())
	require.Error(t, env.GetWorkflowError())
	require.Equal(t, []string{contract.PollTaskQueue("default-test-taskqueue")}, queues)
}
