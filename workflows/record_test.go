package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/contract"
)

// These tests use the SDK's test environment with mocked activities to pin
// the workflow's decisions; the integration tests in this package prove the
// same paths against a real server, broker emulator and database.

func newEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *activities.Activities) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	a := &activities.Activities{}
	env.RegisterActivity(a)
	env.RegisterWorkflow(RecordWorkflow)
	return env, a
}

func delivery(id, handle string, times int64) contract.Delivery {
	return contract.Delivery{MessageID: id, ReceiptHandle: handle, Tag: "SyncEvent", Body: []byte(`{}`), ConsumedTimes: times}
}

func signalAt(env *testsuite.TestWorkflowEnvironment, after time.Duration, d contract.Delivery) {
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(contract.SignalDelivery, d) }, after)
}

func result(t *testing.T, env *testsuite.TestWorkflowEnvironment) contract.RecordResult {
	t.Helper()
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var r contract.RecordResult
	require.NoError(t, env.GetWorkflowResult(&r))
	return r
}

func TestRecordInsertThenAck(t *testing.T) {
	env, a := newEnv(t)
	var order []string
	env.OnActivity(a.Insert, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.InsertInput) (activities.InsertResult, error) {
		order = append(order, "insert:"+in.Delivery.MessageID)
		return activities.InsertResult{Outcome: contract.OutcomeInserted}, nil
	})
	env.OnActivity(a.Ack, mock.Anything, activities.AckInput{Handles: []string{"h1"}}).Return(func(_ context.Context, _ activities.AckInput) (activities.AckResult, error) {
		order = append(order, "ack")
		return activities.AckResult{Acked: 1}, nil
	})
	signalAt(env, 0, delivery("m1", "h1", 1))
	env.ExecuteWorkflow(RecordWorkflow, contract.RecordInput{Key: "k1"})
	r := result(t, env)
	require.Equal(t, []string{"insert:m1", "ack"}, order, "ack must come after the insert")
	require.Equal(t, contract.OutcomeInserted, r.Outcome)
	require.Equal(t, 1, r.Acked)
}

func TestRecordBadInputIsQuarantinedNotRetried(t *testing.T) {
	env, a := newEnv(t)
	inserts := 0
	env.OnActivity(a.Insert, mock.Anything, mock.Anything).Return(func(_ context.Context, _ activities.InsertInput) (activities.InsertResult, error) {
		inserts++
		return activities.InsertResult{}, temporal.NewNonRetryableApplicationError("deviceTimestamp: unparseable", contract.ErrTypeBadInput, nil, "bad_timestamp")
	})
	env.OnActivity(a.Quarantine, mock.Anything, mock.MatchedBy(func(q activities.QuarantineInput) bool {
		return q.Reason == "bad_timestamp" && q.Delivery.MessageID == "m1" && q.Key == "k1"
	})).Return(nil).Once()
	env.OnActivity(a.Ack, mock.Anything, activities.AckInput{Handles: []string{"h1"}}).Return(activities.AckResult{Acked: 1}, nil).Once()
	signalAt(env, 0, delivery("m1", "h1", 1))
	env.ExecuteWorkflow(RecordWorkflow, contract.RecordInput{Key: "k1"})
	r := result(t, env)
	require.Equal(t, 1, inserts, "bad input must not be retried")
	require.Equal(t, contract.OutcomeQuarantined, r.Outcome)
	require.Equal(t, "bad_timestamp", r.Messages[0].Reason)
	env.AssertExpectations(t)
}

func TestRecordTransientInsertErrorsRetryUntilSuccess(t *testing.T) {
	env, a := newEnv(t)
	attempts := 0
	env.OnActivity(a.Insert, mock.Anything, mock.Anything).Return(func(_ context.Context, _ activities.InsertInput) (activities.InsertResult, error) {
		attempts++
		if attempts < 5 {
			return activities.InsertResult{}, errors.New("transient database error: connection refused")
		}
		return activities.InsertResult{Outcome: contract.OutcomeInserted}, nil
	})
	env.OnActivity(a.Ack, mock.Anything, mock.Anything).Return(activities.AckResult{Acked: 1}, nil).Once()
	signalAt(env, 0, delivery("m1", "h1", 1))
	env.ExecuteWorkflow(RecordWorkflow, contract.RecordInput{Key: "k1"})
	r := result(t, env)
	require.Equal(t, 5, attempts)
	require.Equal(t, contract.OutcomeInserted, r.Outcome)
}

// A redelivery of the same message during a slow insert carries a new
// handle; the old one is dead, so only the new one is acked.
func TestRecordRedeliveryDuringInsertAcksNewestHandle(t *testing.T) {
	env, a := newEnv(t)
	env.OnActivity(a.Insert, mock.Anything, mock.Anything).After(time.Minute).Return(activities.InsertResult{Outcome: contract.OutcomeInserted}, nil).Once()
	env.OnActivity(a.Ack, mock.Anything, activities.AckInput{Handles: []string{"h2"}}).Return(activities.AckResult{Acked: 1}, nil).Once()
	signalAt(env, 0, delivery("m1", "h1", 1))
	signalAt(env, 10*time.Second, delivery("m1", "h2", 2))
	env.ExecuteWorkflow(RecordWorkflow, contract.RecordInput{Key: "k1"})
	r := result(t, env)
	require.Len(t, r.Messages, 1)
	env.AssertExpectations(t)
}

// A different message for the same key (a republish, maybe changed) is
// committed too: its conflict must be recorded, not swallowed.
func TestRecordSecondMessageForKeyIsCommitted(t *testing.T) {
	env, a := newEnv(t)
	env.OnActivity(a.Insert, mock.Anything, mock.MatchedBy(func(in activities.InsertInput) bool { return in.Delivery.MessageID == "m1" })).
		After(time.Minute).Return(activities.InsertResult{Outcome: contract.OutcomeInserted}, nil).Once()
	env.OnActivity(a.Insert, mock.Anything, mock.MatchedBy(func(in activities.InsertInput) bool { return in.Delivery.MessageID == "m2" })).
		Return(activities.InsertResult{Outcome: contract.OutcomeConflict}, nil).Once()
	env.OnActivity(a.Ack, mock.Anything, activities.AckInput{Handles: []string{"h1", "h2"}}).Return(activities.AckResult{Acked: 2}, nil).Once()
	signalAt(env, 0, delivery("m1", "h1", 1))
	signalAt(env, 5*time.Second, delivery("m2", "h2", 1))
	env.ExecuteWorkflow(RecordWorkflow, contract.RecordInput{Key: "k1"})
	r := result(t, env)
	require.Equal(t, contract.OutcomeConflict, r.Outcome, "the most severe outcome is reported")
	require.Len(t, r.Messages, 2)
	env.AssertExpectations(t)
}

// A handle that arrives while the ack is in flight is acked before the
// workflow completes: it never completes over an unhandled delivery.
func TestRecordDeliveryDuringAckIsAckedToo(t *testing.T) {
	env, a := newEnv(t)
	env.OnActivity(a.Insert, mock.Anything, mock.Anything).Return(activities.InsertResult{Outcome: contract.OutcomeInserted}, nil).Once()
	env.OnActivity(a.Ack, mock.Anything, activities.AckInput{Handles: []string{"h1"}}).After(30*time.Second).Return(activities.AckResult{Acked: 1}, nil).Once()
	env.OnActivity(a.Ack, mock.Anything, activities.AckInput{Handles: []string{"h2"}}).Return(activities.AckResult{Refused: 1}, nil).Once()
	signalAt(env, 0, delivery("m1", "h1", 1))
	signalAt(env, 10*time.Second, delivery("m1", "h2", 2))
	env.ExecuteWorkflow(RecordWorkflow, contract.RecordInput{Key: "k1"})
	r := result(t, env)
	require.Equal(t, 1, r.Acked)
	require.Equal(t, 1, r.AckExpired)
	env.AssertExpectations(t)
}

func TestRecordInitialDeliveriesWithoutSignal(t *testing.T) {
	env, a := newEnv(t)
	env.OnActivity(a.Insert, mock.Anything, mock.Anything).Return(activities.InsertResult{Outcome: contract.OutcomeDuplicate}, nil).Once()
	env.OnActivity(a.Ack, mock.Anything, mock.Anything).Return(activities.AckResult{Acked: 1}, nil).Once()
	env.ExecuteWorkflow(RecordWorkflow, contract.RecordInput{Key: "k1", Initial: []contract.Delivery{delivery("m1", "h1", 1)}})
	r := result(t, env)
	require.Equal(t, contract.OutcomeDuplicate, r.Outcome)
}

func TestRecordWithoutDeliveryEndsEmpty(t *testing.T) {
	env, _ := newEnv(t)
	env.ExecuteWorkflow(RecordWorkflow, contract.RecordInput{Key: "k1"})
	r := result(t, env)
	require.Empty(t, r.Messages)
	require.Equal(t, contract.Outcome(""), r.Outcome)
}
