package workflows

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/contract"
)

// Unit tests of the lean record workflow's decisions with mocked
// activities. internal/workerapp proves the same paths against the real
// server, emulator and database, and counts their history events.

func newEnvV2(t *testing.T) (*testsuite.TestWorkflowEnvironment, *activities.Activities) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	a := &activities.Activities{}
	env.RegisterActivity(a)
	env.RegisterWorkflowWithOptions(RecordWorkflowV2, workflow.RegisterOptions{Name: contract.RecordWorkflowV2Name})
	return env, a
}

func initial(ds ...contract.Delivery) contract.RecordInput {
	return contract.RecordInput{Key: "k1", Initial: ds}
}

func TestLeanRecordInsertsThenAcksLocally(t *testing.T) {
	env, a := newEnvV2(t)
	var order []string
	env.OnActivity(a.Insert, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.InsertInput) (activities.InsertResult, error) {
		require.True(t, activity.GetInfo(ctx).IsLocalActivity, "insert must run as a local activity")
		order = append(order, "insert:"+in.Delivery.MessageID)
		return activities.InsertResult{Outcome: contract.OutcomeInserted}, nil
	})
	env.OnActivity(a.Ack, mock.Anything, activities.AckInput{Handles: []string{"h1"}}).Return(func(ctx context.Context, _ activities.AckInput) (activities.AckResult, error) {
		require.True(t, activity.GetInfo(ctx).IsLocalActivity, "ack must run as a local activity")
		order = append(order, "ack")
		return activities.AckResult{Acked: 1}, nil
	})
	env.ExecuteWorkflow(RecordWorkflowV2, initial(delivery("m1", "h1", 1)))
	r := result(t, env)
	require.Equal(t, []string{"insert:m1", "ack"}, order, "ack must come after the insert")
	require.Equal(t, contract.OutcomeInserted, r.Outcome)
	require.Equal(t, 1, r.Acked)
}

// A few local attempts, then a regular activity that retries until the
// database is back: the record is visible as a pending activity.
func TestLeanRecordFallsBackToRegularActivity(t *testing.T) {
	env, a := newEnvV2(t)
	local, regular := 0, 0
	env.OnActivity(a.Insert, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ activities.InsertInput) (activities.InsertResult, error) {
		if activity.GetInfo(ctx).IsLocalActivity {
			local++
			return activities.InsertResult{}, errors.New("transient database error: connection refused")
		}
		regular++
		if regular < 4 {
			return activities.InsertResult{}, errors.New("transient database error: connection refused")
		}
		return activities.InsertResult{Outcome: contract.OutcomeInserted}, nil
	})
	env.OnActivity(a.Ack, mock.Anything, mock.Anything).Return(activities.AckResult{Acked: 1}, nil).Once()
	env.ExecuteWorkflow(RecordWorkflowV2, initial(delivery("m1", "h1", 1)))
	r := result(t, env)
	require.Equal(t, localAttempts, local, "local attempts before the fallback")
	require.Equal(t, 4, regular, "the regular activity keeps retrying")
	require.Equal(t, contract.OutcomeInserted, r.Outcome)
}

func TestLeanRecordBadInputIsQuarantinedOnce(t *testing.T) {
	env, a := newEnvV2(t)
	inserts := 0
	env.OnActivity(a.Insert, mock.Anything, mock.Anything).Return(func(_ context.Context, _ activities.InsertInput) (activities.InsertResult, error) {
		inserts++
		return activities.InsertResult{}, temporal.NewNonRetryableApplicationError("deviceTimestamp: unparseable", contract.ErrTypeBadInput, nil, "bad_timestamp")
	})
	env.OnActivity(a.Quarantine, mock.Anything, mock.MatchedBy(func(q activities.QuarantineInput) bool {
		return q.Reason == "bad_timestamp" && q.Delivery.MessageID == "m1" && q.Key == "k1"
	})).Return(nil).Once()
	env.OnActivity(a.Ack, mock.Anything, activities.AckInput{Handles: []string{"h1"}}).Return(activities.AckResult{Acked: 1}, nil).Once()
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Once()
	env.ExecuteWorkflow(RecordWorkflowV2, initial(delivery("m1", "h1", 1)))
	r := result(t, env)
	require.Equal(t, 1, inserts, "bad input must not be retried")
	require.Equal(t, contract.OutcomeQuarantined, r.Outcome)
	env.AssertExpectations(t)
}

// A redelivery during a slow insert arrives by signal; its newer handle
// is the one acked.
func TestLeanRecordRedeliveryDuringInsertAcksNewestHandle(t *testing.T) {
	env, a := newEnvV2(t)
	env.OnActivity(a.Insert, mock.Anything, mock.Anything).After(5*time.Second).Return(activities.InsertResult{Outcome: contract.OutcomeInserted}, nil).Once()
	env.OnActivity(a.Ack, mock.Anything, activities.AckInput{Handles: []string{"h2"}}).Return(activities.AckResult{Acked: 1}, nil).Once()
	signalAt(env, time.Second, delivery("m1", "h2", 2))
	env.ExecuteWorkflow(RecordWorkflowV2, initial(delivery("m1", "h1", 1)))
	r := result(t, env)
	require.Len(t, r.Messages, 1)
	env.AssertExpectations(t)
}

// A changed republish of the key becomes a conflict and is indexed for
// the operator; clean outcomes are not indexed (an upsert is billable).
func TestLeanRecordIndexesOnlyOutcomesThatNeedAPerson(t *testing.T) {
	env, a := newEnvV2(t)
	env.OnActivity(a.Insert, mock.Anything, mock.MatchedBy(func(in activities.InsertInput) bool { return in.Delivery.MessageID == "m1" })).
		Return(activities.InsertResult{Outcome: contract.OutcomeInserted}, nil).Once()
	env.OnActivity(a.Insert, mock.Anything, mock.MatchedBy(func(in activities.InsertInput) bool { return in.Delivery.MessageID == "m2" })).
		Return(activities.InsertResult{Outcome: contract.OutcomeConflict}, nil).Once()
	env.OnActivity(a.Ack, mock.Anything, activities.AckInput{Handles: []string{"h1", "h2"}}).Return(activities.AckResult{Acked: 2}, nil).Once()
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Once()
	env.ExecuteWorkflow(RecordWorkflowV2, initial(delivery("m1", "h1", 1), delivery("m2", "h2", 1)))
	r := result(t, env)
	require.Equal(t, contract.OutcomeConflict, r.Outcome)
	env.AssertExpectations(t)

	env2, a2 := newEnvV2(t)
	env2.OnActivity(a2.Insert, mock.Anything, mock.Anything).Return(activities.InsertResult{Outcome: contract.OutcomeDuplicate}, nil).Once()
	env2.OnActivity(a2.Ack, mock.Anything, mock.Anything).Return(activities.AckResult{Acked: 1}, nil).Once()
	upserts := 0
	env2.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(mock.Arguments) { upserts++ }).Return(nil).Maybe()
	env2.ExecuteWorkflow(RecordWorkflowV2, initial(delivery("m1", "h1", 1)))
	require.Equal(t, contract.OutcomeDuplicate, result(t, env2).Outcome)
	require.Zero(t, upserts, "a duplicate must not be indexed")
}

// A delivery that arrives while the ack is in flight is acked before the
// run completes.
func TestLeanRecordDeliveryDuringAckIsAckedToo(t *testing.T) {
	env, a := newEnvV2(t)
	env.OnActivity(a.Insert, mock.Anything, mock.Anything).Return(activities.InsertResult{Outcome: contract.OutcomeInserted}, nil).Once()
	env.OnActivity(a.Ack, mock.Anything, activities.AckInput{Handles: []string{"h1"}}).After(3*time.Second).Return(activities.AckResult{Acked: 1}, nil).Once()
	env.OnActivity(a.Ack, mock.Anything, activities.AckInput{Handles: []string{"h2"}}).Return(activities.AckResult{Refused: 1}, nil).Once()
	signalAt(env, time.Second, delivery("m1", "h2", 2))
	env.ExecuteWorkflow(RecordWorkflowV2, initial(delivery("m1", "h1", 1)))
	r := result(t, env)
	require.Equal(t, 1, r.Acked)
	require.Equal(t, 1, r.AckExpired)
	env.AssertExpectations(t)
}

// Redeliveries while the insert is stuck fill the history; past the bound
// the run continues as new with the uncommitted delivery (newest handle)
// as input, and nothing else.
func TestLeanRecordContinuesAsNewWhenHistoryFills(t *testing.T) {
	old := maxSignalsPerRun
	maxSignalsPerRun = 5
	t.Cleanup(func() { maxSignalsPerRun = old })

	env, a := newEnvV2(t)
	env.OnActivity(a.Insert, mock.Anything, mock.Anything).Return(func(ctx context.Context, _ activities.InsertInput) (activities.InsertResult, error) {
		return activities.InsertResult{}, errors.New("transient database error: connection refused")
	})
	for i := 1; i <= 6; i++ {
		signalAt(env, time.Duration(i)*10*time.Second, delivery("m1", fmt.Sprintf("h%d", i+1), int64(i+1)))
	}
	env.ExecuteWorkflow(RecordWorkflowV2, initial(delivery("m1", "h1", 1)))
	require.True(t, env.IsWorkflowCompleted())
	var can *workflow.ContinueAsNewError
	require.ErrorAs(t, env.GetWorkflowError(), &can)
	require.Equal(t, contract.RecordWorkflowV2Name, can.WorkflowType.Name)
	var next contract.RecordInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.Len(t, next.Initial, 1, "the uncommitted delivery is carried with its body")
	require.Equal(t, "h6", next.Initial[0].ReceiptHandle, "the newest handle is carried")
	require.NotEmpty(t, next.Initial[0].Body)
	require.NotNil(t, next.Carried)
	require.Empty(t, next.Carried.Done)
}

// A continued run takes over committed messages without their bodies: a
// redelivery of one is not inserted again, only its new handle acked.
func TestLeanRecordCarriedStateIsNotCommittedAgain(t *testing.T) {
	env, a := newEnvV2(t)
	done := delivery("m1", "h1", 1)
	done.Body = nil
	env.OnActivity(a.Insert, mock.Anything, mock.MatchedBy(func(in activities.InsertInput) bool { return in.Delivery.MessageID == "m2" })).
		After(5*time.Second).Return(activities.InsertResult{Outcome: contract.OutcomeDuplicate}, nil).Once()
	env.OnActivity(a.Ack, mock.Anything, activities.AckInput{Handles: []string{"h9", "h2"}}).Return(activities.AckResult{Acked: 2}, nil).Once()
	signalAt(env, time.Second, delivery("m1", "h9", 3))
	in := contract.RecordInput{Key: "k1", Initial: []contract.Delivery{delivery("m2", "h2", 1)},
		Carried: &contract.CarriedState{Acked: 1, Done: []contract.DoneMessage{{Delivery: done, Outcome: contract.OutcomeInserted, AckedFor: "h1"}}}}
	env.ExecuteWorkflow(RecordWorkflowV2, in)
	r := result(t, env)
	require.Equal(t, 3, r.Acked)
	require.Equal(t, contract.OutcomeInserted, r.Outcome)
	require.Len(t, r.Messages, 2)
	env.AssertExpectations(t)
}
