package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
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
