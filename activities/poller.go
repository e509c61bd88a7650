package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqclient"
)

// PollInput bounds one run of the poller activity.
type PollInput struct {
	Topic, Group string
	// RunFor is how long to keep polling before returning, so the poller
	// workflow regains control (stop signals, continue-as-new).
	RunFor time.Duration
}

// PollResult summarises one run.
type PollResult struct {
	Batches  int
	Messages int
	// Stopped is set when the worker is shutting down.
	Stopped bool
}

// Poll drains the topic into record workflows until RunFor elapses or the
// worker stops. Each message is handed to its key's workflow with
// signal-with-start:
//   - no workflow for the key, or the last one failed: a new run starts;
//   - a running workflow: it receives the new receipt handle by signal;
//   - a completed workflow: the message is committed idempotently here (the
//     database decides duplicate or conflict) and acked.
//
// A message whose hand-over fails is left unacked: the broker redelivers it
// after its invisibility time. The poller never acks a message it has not
// committed or handed over.
func (a *Activities) Poll(ctx context.Context, in PollInput) (PollResult, error) {
	if in.Topic != a.Settings.Topic || in.Group != a.Settings.Group {
		return PollResult{}, badInput("wrong_topic", fmt.Sprintf("this worker consumes %s/%s, not %s/%s",
			a.Settings.Topic, a.Settings.Group, in.Topic, in.Group))
	}
	log := activity.GetLogger(ctx)
	stop := activity.GetWorkerStopChannel(ctx)
	deadline := time.Now().Add(in.RunFor)
	var res PollResult
	backoff := newBackoff(200*time.Millisecond, 10*time.Second)

	for time.Now().Before(deadline) {
		activity.RecordHeartbeat(ctx, res)
		select {
		case <-stop:
			res.Stopped = true
			return res, nil
		case <-ctx.Done():
			// Cancelled by the poller workflow (stop) or timed out: the
			// previous batch is fully handed over, so returning is clean.
			return res, ctx.Err()
		default:
		}

		if wait, err := a.overCap(ctx); err != nil {
			log.Warn("counting in-flight records failed; polling anyway", "error", err)
		} else if wait {
			a.Metrics.PollThrottled.Inc(1)
			sleep(ctx, stop, time.Second)
			continue
		}

		// Once a consume call starts, its batch is seen through even if
		// the activity is cancelled or the worker is stopping: abandoning
		// it would leave the batch invisible for the broker's whole
		// invisibility time. Bounded by the long poll plus hand-over.
		batchCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.Settings.PollWait+time.Minute)
		n, err := a.pollOnce(batchCtx, ctx)
		cancel()
		if err != nil {
			a.Metrics.PollErrors.Inc(1)
			log.Warn("consume failed", "error", err)
			sleep(ctx, stop, backoff.next())
			continue
		}
		backoff.reset()
		if n > 0 {
			res.Batches++
			res.Messages += n
		}
	}
	return res, nil
}

// pollOnce consumes one batch and hands every message over. Hand-over
// failures leave that message for redelivery and do not fail the batch.
func (a *Activities) pollOnce(batchCtx, hbCtx context.Context) (int, error) {
	msgs, err := a.Consumer.Consume(batchCtx, a.Settings.BatchSize, a.Settings.PollWait)
	if err != nil {
		return 0, err
	}
	a.Metrics.MessagesPolled.Inc(int64(len(msgs)))
	for _, m := range msgs {
		if err := a.handOver(batchCtx, m); err != nil {
			activity.GetLogger(hbCtx).Warn("message left for redelivery", "messageId", m.MessageID, "error", err)
		}
		activity.RecordHeartbeat(hbCtx)
	}
	return len(msgs), nil
}

// overCap reports whether running record workflows have reached the cap.
func (a *Activities) overCap(ctx context.Context) (bool, error) {
	if a.Settings.MaxInFlight <= 0 {
		return false, nil
	}
	q := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running' AND TaskQueue = '%s'",
		contract.RecordWorkflowName, a.Settings.TaskQueue)
	resp, err := a.Temporal.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q})
	if err != nil {
		return false, fmt.Errorf("count running records: %w", err)
	}
	a.Metrics.InFlight.Update(float64(resp.GetCount()))
	return resp.GetCount() >= int64(a.Settings.MaxInFlight), nil
}

// handOver gives one message to its record workflow, retrying while
// Temporal throttles us.
func (a *Activities) handOver(ctx context.Context, m mqclient.Message) error {
	d := contract.Delivery{
		MessageID:       m.MessageID,
		ReceiptHandle:   m.ReceiptHandle,
		Tag:             m.Tag,
		Body:            m.Body,
		ConsumedTimes:   m.ConsumedTimes,
		NextConsumeTime: m.NextConsumeTime,
	}
	if m.Key == "" {
		// No key, no workflow ID: quarantine directly, then ack.
		return a.commitAndAck(ctx, "", d)
	}
	opts := client.StartWorkflowOptions{
		ID:        contract.RecordWorkflowID(a.Settings.WorkflowIDPrefix, m.Key),
		TaskQueue: a.Settings.TaskQueue,
		// A failed, terminated or timed-out record may run again; a
		// completed one may not: its redeliveries are duplicates.
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}
	if reason, detail, ok := a.Settings.CheckHandover(m.Key, d); !ok {
		return a.quarantineAndAck(ctx, m.Key, d, reason, detail) // handover_check.go
	}
	input := contract.RecordInput{Key: m.Key, Topic: a.Settings.Topic, Group: a.Settings.Group}
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		_, err := a.Temporal.SignalWithStartWorkflow(ctx, opts.ID, contract.SignalDelivery, d, opts, contract.RecordWorkflowName, input)
		var already *serviceerror.WorkflowExecutionAlreadyStarted
		var exhausted *serviceerror.ResourceExhausted
		switch {
		case err == nil:
			a.Metrics.WorkflowsStarted.Inc(1)
			return nil
		case errors.As(err, &already):
			a.Metrics.DuplicatesByWorkflowID.Inc(1)
			return a.commitAndAck(ctx, m.Key, d)
		case errors.As(err, &exhausted):
			// Temporal is shedding load: slow down rather than skip.
			a.Metrics.PollThrottled.Inc(1)
			if !sleep(ctx, nil, backoff.next()) {
				return ctx.Err()
			}
		default:
			if reason, ok := IsPermanentHandoverError(err); ok { // handover_check.go
				return a.refusedHandover(ctx, m.Key, d, reason, err)
			}
			return fmt.Errorf("signal-with-start %s: %w", opts.ID, err)
		}
	}
}

// commitAndAck handles a message outside any record workflow (no key, or
// the key's workflow already completed): commit or quarantine, then ack.
func (a *Activities) commitAndAck(ctx context.Context, key string, d contract.Delivery) error {
	out, err := a.commit(ctx, key, d)
	if key == "" && err == nil {
		// Parse rejects an empty key; this is unreachable unless the
		// parser changes, and then the record must still not be acked
		// without a row.
		return errors.New("message without key was not rejected by the parser")
	}
	if reason, msg, ok := BadInputReason(err); ok {
		if err := a.Quarantine(ctx, QuarantineInput{Key: key, Delivery: d, Reason: reason, Detail: msg}); err != nil {
			return err
		}
		out, err = contract.OutcomeQuarantined, nil
	}
	if err != nil {
		return err
	}
	if out != contract.OutcomeQuarantined {
		a.Metrics.Outcome(string(out))
	}
	_, err = a.Ack(ctx, AckInput{Handles: []string{d.ReceiptHandle}})
	return err
}

type backoff struct{ cur, lo, hi time.Duration }

func newBackoff(lo, hi time.Duration) *backoff { return &backoff{lo: lo, hi: hi} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.lo
	} else {
		b.cur = min(2*b.cur, b.hi)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d; false if ctx ended or the worker is stopping.
func sleep(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}
