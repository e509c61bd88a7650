package workflows

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/contract"
)

func newOperatorEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *activities.Activities) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	a := &activities.Activities{}
	env.RegisterActivity(a)
	Register(env)
	return env, a
}

// pages serves ListPage from a fixed set of items per category, two per
// page.
func pages(items map[string][]activities.ListedItem) func(context.Context, activities.ListPageInput) (activities.ListPageResult, error) {
	return func(_ context.Context, in activities.ListPageInput) (activities.ListPageResult, error) {
		all := items[in.Category]
		start := 0
		if len(in.PageToken) > 0 {
			start = int(in.PageToken[0])
		}
		end := min(start+2, len(all))
		res := activities.ListPageResult{Items: all[start:end]}
		if end < len(all) {
			res.NextPageToken = []byte{byte(end)}
		}
		return res, nil
	}
}

func item(key, decision string) activities.ListedItem {
	return activities.ListedItem{Key: key, WorkflowID: "wf/" + key, RunID: "run-" + key, Decision: decision}
}

func reconcileItems() map[string][]activities.ListedItem {
	return map[string][]activities.ListedItem{
		activities.CategoryTerminated: {
			item("a", activities.DecisionRedrive), item("b", activities.DecisionCommitted),
			item("c", activities.DecisionRedrive), item("d", activities.DecisionSuperseded),
			item("e", activities.DecisionQuarantined),
		},
		activities.CategoryFailed: {item("f", activities.DecisionRedrive)},
		activities.CategoryStuck: {{Key: "s", Decision: activities.DecisionStuck,
			Stuck: &contract.StuckRecord{Key: "s", PendingActivity: "Insert", Attempt: 9, LastFailure: "db down"}}},
	}
}

func TestReconcileRedrivesPacedAndReports(t *testing.T) {
	env, a := newOperatorEnv(t)
	env.OnActivity(a.ListPage, mock.Anything, mock.Anything).Return(pages(reconcileItems()))
	var redriven []string
	env.OnActivity(a.Redrive, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RedriveInput) (activities.RedriveResult, error) {
		redriven = append(redriven, in.Key)
		if in.Key == "c" {
			// Committed between listing and re-drive.
			return activities.RedriveResult{Decision: activities.DecisionCommitted}, nil
		}
		return activities.RedriveResult{Decision: activities.DecisionRedrive, NewRunID: "new"}, nil
	})
	env.OnActivity(a.ListReplayRequested, mock.Anything, mock.Anything).Return([]activities.ReplayRequestedRow{{ID: 7, Key: "q"}}, nil).Once()
	env.OnActivity(a.StartReplay, mock.Anything, activities.StartReplayInput{QuarantineID: 7}).Return("run", nil)

	env.ExecuteWorkflow(contract.ReconcileWorkflowName, contract.ReconcileInput{RatePerSecond: 2})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var rep contract.ReconcileReport
	require.NoError(t, env.GetWorkflowResult(&rep))

	require.Equal(t, []string{"f", "a", "c"}, redriven) // failed is visited first
	require.Equal(t, 1, rep.Failed)
	require.Equal(t, 5, rep.Terminated)
	require.Equal(t, 1, rep.Stuck)
	require.Equal(t, 2, rep.Redriven)
	require.Equal(t, []string{"f", "a"}, rep.RedrivenKeys)
	require.Equal(t, 2, rep.Committed)
	require.Equal(t, 1, rep.Superseded)
	require.Equal(t, 1, rep.Quarantined)
	require.Equal(t, "Insert", rep.StuckRecords[0].PendingActivity)
	require.Equal(t, 1, rep.ReplaysRequested)
	require.Equal(t, 1, rep.ReplaysStarted)
	require.Equal(t, []int64{7}, rep.ReplayIDs)
	// Three starts at 2/s: at least 1.5 s of workflow time passed.
	require.GreaterOrEqual(t, rep.FinishedAt.Sub(rep.StartedAt), 1500*time.Millisecond)
}

func TestReconcileDryRunStartsNothing(t *testing.T) {
	env, a := newOperatorEnv(t)
	env.OnActivity(a.ListPage, mock.Anything, mock.Anything).Return(pages(reconcileItems()))
	env.OnActivity(a.ListReplayRequested, mock.Anything, mock.Anything).Return([]activities.ReplayRequestedRow{{ID: 7}}, nil).Once()
	env.ExecuteWorkflow(contract.ReconcileWorkflowName, contract.ReconcileInput{DryRun: true})
	require.NoError(t, env.GetWorkflowError())
	var rep contract.ReconcileReport
	require.NoError(t, env.GetWorkflowResult(&rep))
	require.True(t, rep.DryRun)
	require.Equal(t, 3, rep.WouldRedrive)
	require.Equal(t, 0, rep.Redriven)
	require.Equal(t, []string{"f", "a", "c"}, rep.RedrivenKeys)
	require.Equal(t, 1, rep.ReplaysRequested)
	require.Equal(t, 0, rep.ReplaysStarted)
	env.AssertNotCalled(t, "Redrive", mock.Anything, mock.Anything)
	env.AssertNotCalled(t, "StartReplay", mock.Anything, mock.Anything)
}

// Past ItemsBeforeContinue the workflow continues as new with its cursor
// and report.
func TestReconcileContinuesAsNewCarryingTheReport(t *testing.T) {
	env, a := newOperatorEnv(t)
	env.OnActivity(a.ListPage, mock.Anything, mock.Anything).Return(pages(reconcileItems()))
	env.OnActivity(a.Redrive, mock.Anything, mock.Anything).Return(activities.RedriveResult{Decision: activities.DecisionRedrive}, nil)
	env.ExecuteWorkflow(contract.ReconcileWorkflowName, contract.ReconcileInput{ItemsBeforeContinue: 3, RatePerSecond: 100})
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(err, &can), "got %v", err)
	var next contract.ReconcileInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	// failed (1 item) then the first terminated page (2 items).
	require.Equal(t, 1, next.State.Phase)
	require.Equal(t, []byte{2}, next.State.PageToken)
	require.Equal(t, 2, next.State.Report.Redriven)
	require.Equal(t, 1, next.State.Report.Runs)
	require.False(t, next.State.Now.IsZero())
}

// A re-drive that fails is counted and reported, and the rest goes on.
func TestReconcileRecordsRedriveErrors(t *testing.T) {
	env, a := newOperatorEnv(t)
	env.OnActivity(a.ListPage, mock.Anything, mock.Anything).Return(pages(map[string][]activities.ListedItem{
		activities.CategoryFailed: {item("x", activities.DecisionRedrive), item("y", activities.DecisionError)},
	}))
	env.OnActivity(a.Redrive, mock.Anything, mock.Anything).Return(activities.RedriveResult{}, errBadInput("boom"))
	env.OnActivity(a.ListReplayRequested, mock.Anything, mock.Anything).Return(nil, nil)
	env.ExecuteWorkflow(contract.ReconcileWorkflowName, contract.ReconcileInput{})
	require.NoError(t, env.GetWorkflowError())
	var rep contract.ReconcileReport
	require.NoError(t, env.GetWorkflowResult(&rep))
	require.Equal(t, 2, rep.Errors)
	require.Len(t, rep.ErrorSamples, 2)
}

func TestReplayQuarantineLandsAndMarksReplayed(t *testing.T) {
	env, a := newOperatorEnv(t)
	d := contract.Delivery{MessageID: "m1", Body: []byte(`{}`)}
	env.OnActivity(a.PrepareReplay, mock.Anything, contract.ReplayQuarantineInput{QuarantineID: 4}).
		Return(activities.PrepareReplayResult{Status: "replay_requested", Key: "k", RecordWorkflowID: "k#replay-4", Delivery: d}, nil)
	env.OnWorkflow(contract.RecordWorkflowName, mock.Anything, contract.RecordInput{Key: "k", Initial: []contract.Delivery{d}}).
		Return(contract.RecordResult{Key: "k", Outcome: contract.OutcomeInserted}, nil)
	env.OnActivity(a.FinishReplay, mock.Anything, mock.MatchedBy(func(in activities.FinishReplayInput) bool {
		return in.QuarantineID == 4 && in.Outcome == contract.OutcomeInserted && in.RecordWorkflowID == "k#replay-4"
	})).Return("replayed", nil)
	env.ExecuteWorkflow(contract.ReplayQuarantineWorkflowName, contract.ReplayQuarantineInput{QuarantineID: 4})
	require.NoError(t, env.GetWorkflowError())
	var res contract.ReplayQuarantineResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, contract.OutcomeInserted, res.Outcome)
	require.Equal(t, "replayed", res.Status)
}

func TestReplayQuarantineOfReplayedRowIsNoop(t *testing.T) {
	env, a := newOperatorEnv(t)
	env.OnActivity(a.PrepareReplay, mock.Anything, mock.Anything).
		Return(activities.PrepareReplayResult{AlreadyDone: true, Status: "replayed", Key: "k"}, nil)
	env.ExecuteWorkflow(contract.ReplayQuarantineWorkflowName, contract.ReplayQuarantineInput{QuarantineID: 4})
	require.NoError(t, env.GetWorkflowError())
	var res contract.ReplayQuarantineResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.True(t, res.AlreadyDone)
	env.AssertNotCalled(t, "FinishReplay", mock.Anything, mock.Anything)
}

func TestReplayQuarantinedAgainReportsReason(t *testing.T) {
	env, a := newOperatorEnv(t)
	d := contract.Delivery{MessageID: "m1", Body: []byte(`{}`)}
	env.OnActivity(a.PrepareReplay, mock.Anything, mock.Anything).
		Return(activities.PrepareReplayResult{Key: "k", RecordWorkflowID: "k#replay-4", Delivery: d}, nil)
	env.OnWorkflow(contract.RecordWorkflowName, mock.Anything, mock.Anything).Return(contract.RecordResult{
		Key: "k", Outcome: contract.OutcomeQuarantined,
		Messages: []contract.MessageResult{{MessageID: "m1", Outcome: contract.OutcomeQuarantined, Reason: "missing_patient_id"}},
	}, nil)
	env.OnActivity(a.FinishReplay, mock.Anything, mock.MatchedBy(func(in activities.FinishReplayInput) bool {
		return in.Outcome == contract.OutcomeQuarantined && in.Reason == "missing_patient_id"
	})).Return("quarantined", nil)
	env.ExecuteWorkflow(contract.ReplayQuarantineWorkflowName, contract.ReplayQuarantineInput{QuarantineID: 4})
	require.NoError(t, env.GetWorkflowError())
	var res contract.ReplayQuarantineResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, "quarantined", res.Status)
	require.Equal(t, "missing_patient_id", res.Reason)
}

// errBadInput is the activities' non-retryable bad-input error.
func errBadInput(reason string) error {
	return temporal.NewNonRetryableApplicationError("bad input: "+reason, contract.ErrTypeBadInput, nil, reason)
}

// A listing that keeps failing ends the reconciliation with its error
// after bounded retries instead of hanging.
func TestReconcileFailsWhenListingKeepsFailing(t *testing.T) {
	env, a := newOperatorEnv(t)
	calls := 0
	env.OnActivity(a.ListPage, mock.Anything, mock.Anything).Return(func(context.Context, activities.ListPageInput) (activities.ListPageResult, error) {
		calls++
		return activities.ListPageResult{}, errors.New("visibility unavailable")
	})
	env.ExecuteWorkflow(contract.ReconcileWorkflowName, contract.ReconcileInput{})
	require.True(t, env.IsWorkflowCompleted())
	require.ErrorContains(t, env.GetWorkflowError(), "visibility unavailable")
	require.Equal(t, 10, calls)
}

// TestReplayOperatorHistories replays the operator workflows' histories
// recorded from the real server (by starter's integration tests with
// SYNCBRIDGE_UPDATE_HISTORY=1) against the current code, like
// TestReplayRecordedHistories does for the pipeline's.
func TestReplayOperatorHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "operator", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("expected recorded operator histories in testdata/operator, found %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			Register(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
