// Package workflows holds the pipeline's workflows: one record workflow per
// message key, and the long-lived poller workflows that feed them.
//
// Workflow code here must stay deterministic: no wall clock, randomness,
// native goroutines or map iteration; only workflow.* APIs.
package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/searchattr"
)

// FirstDeliveryTimeout bounds how long a record workflow started without a
// delivery waits for one before completing empty. Signal-with-start always
// delivers one; this only guards a workflow started by hand.
const FirstDeliveryTimeout = 10 * time.Minute

// Retry policies. Database and broker trouble is retried without a limit
// on attempts: a record must not be given up while the fault is outside
// it, and while it waits it is visible as a pending activity with its last
// error and attempt count. Bad input is never retried.
var (
	dbRetry = &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        time.Minute,
		MaximumAttempts:        0,
		NonRetryableErrorTypes: []string{contract.ErrTypeBadInput},
	}
	ackRetry = &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    30 * time.Second,
		MaximumAttempts:    0,
	}
)

// message is one distinct MQ message (by message ID) of this key.
type message struct {
	d        contract.Delivery // newest delivery: its handle is the live one
	done     bool
	outcome  contract.Outcome
	reason   string
	ackedFor string // the handle last acknowledged
}

type record struct {
	in    contract.RecordInput
	msgs  []*message // arrival order, for deterministic iteration
	byID  map[string]*message
	acked int
	refus int
}

// RecordWorkflow commits every message delivered for one key, then acks
// its receipt handles. Redeliveries arriving while it runs are signalled in
// by the poller: a new handle for a known message replaces the old one (the
// old is dead once the broker redelivers); a new message for the key is
// committed in turn, so a changed payload becomes a recorded conflict, never
// a lost update. The workflow ends only when no delivery is left unacked.
func RecordWorkflow(ctx workflow.Context, in contract.RecordInput) (contract.RecordResult, error) {
	r := &record{in: in, byID: map[string]*message{}}
	for _, d := range in.Initial {
		r.receive(d)
	}
	ch := workflow.GetSignalChannel(ctx, contract.SignalDelivery)
	r.drain(ch)

	if len(r.msgs) == 0 {
		var d contract.Delivery
		ok, _ := ch.ReceiveWithTimeout(ctx, FirstDeliveryTimeout, &d)
		if !ok {
			workflow.GetLogger(ctx).Warn("record workflow started without a delivery", "key", in.Key)
			return contract.RecordResult{Key: in.Key}, nil
		}
		r.receive(d)
	}

	for {
		r.drain(ch)
		if m := r.nextPending(); m != nil {
			if err := r.commit(ctx, ch, m); err != nil {
				return contract.RecordResult{}, err
			}
			continue
		}
		if handles := r.unacked(); len(handles) > 0 {
			if err := r.ack(ctx, ch, handles); err != nil {
				return contract.RecordResult{}, err
			}
			continue
		}
		// Nothing pending after a drain. A signal arriving now makes the
		// server reject this completion and replay the task, so the loop
		// above sees it: no delivery is completed over.
		break
	}

	res := r.result()
	if err := workflow.UpsertTypedSearchAttributes(ctx, searchattr.Outcome.ValueSet(string(res.Outcome))); err != nil {
		return res, err
	}
	return res, nil
}

func (r *record) receive(d contract.Delivery) {
	if m, ok := r.byID[d.MessageID]; ok {
		if d.ConsumedTimes >= m.d.ConsumedTimes {
			m.d = d
		}
		return
	}
	m := &message{d: d}
	r.msgs = append(r.msgs, m)
	r.byID[d.MessageID] = m
}

func (r *record) drain(ch workflow.ReceiveChannel) {
	for {
		var d contract.Delivery
		if !ch.ReceiveAsync(&d) {
			return
		}
		r.receive(d)
	}
}

func (r *record) nextPending() *message {
	for _, m := range r.msgs {
		if !m.done {
			return m
		}
	}
	return nil
}

func (r *record) unacked() []string {
	var hs []string
	for _, m := range r.msgs {
		if m.done && m.d.ReceiptHandle != "" && m.ackedFor != m.d.ReceiptHandle {
			hs = append(hs, m.d.ReceiptHandle)
		}
	}
	return hs
}

// await waits for f while still taking in deliveries, so a redelivery
// during a long insert is not left waiting in the channel.
func await(ctx workflow.Context, ch workflow.ReceiveChannel, r *record, f workflow.Future, valuePtr interface{}) error {
	for !f.IsReady() {
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(f, func(workflow.Future) {})
		sel.AddReceive(ch, func(c workflow.ReceiveChannel, _ bool) {
			var d contract.Delivery
			c.Receive(ctx, &d)
			r.receive(d)
		})
		sel.Select(ctx)
	}
	return f.Get(ctx, valuePtr)
}

func (r *record) commit(ctx workflow.Context, ch workflow.ReceiveChannel, m *message) error {
	var a *activities.Activities
	ictx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         dbRetry,
	})
	var out activities.InsertResult
	err := await(ctx, ch, r, workflow.ExecuteActivity(ictx, a.Insert, activities.InsertInput{Key: r.in.Key, Delivery: m.d}), &out)
	if err == nil {
		m.done, m.outcome = true, out.Outcome
		return nil
	}
	reason, msg, bad := activities.BadInputReason(err)
	if !bad {
		return err
	}
	q := activities.QuarantineInput{Key: r.in.Key, Delivery: m.d, Reason: reason, Detail: msg}
	if err := await(ctx, ch, r, workflow.ExecuteActivity(ictx, a.Quarantine, q), nil); err != nil {
		return err
	}
	m.done, m.outcome, m.reason = true, contract.OutcomeQuarantined, reason
	return nil
}

func (r *record) ack(ctx workflow.Context, ch workflow.ReceiveChannel, handles []string) error {
	var a *activities.Activities
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 45 * time.Second,
		RetryPolicy:         ackRetry,
	})
	var res activities.AckResult
	if err := await(ctx, ch, r, workflow.ExecuteActivity(actx, a.Ack, activities.AckInput{Handles: handles}), &res); err != nil {
		return err
	}
	r.markAcked(handles, res)
	return nil
}

// markAcked records what the broker said about handles.
func (r *record) markAcked(handles []string, res activities.AckResult) {
	r.acked += res.Acked
	r.refus += res.Refused
	sent := make(map[string]bool, len(handles))
	for _, h := range handles {
		sent[h] = true
	}
	for _, m := range r.msgs {
		if sent[m.d.ReceiptHandle] {
			m.ackedFor = m.d.ReceiptHandle
		}
	}
}

func (r *record) result() contract.RecordResult {
	res := contract.RecordResult{Key: r.in.Key, Acked: r.acked, AckExpired: r.refus}
	for _, m := range r.msgs {
		res.Messages = append(res.Messages, contract.MessageResult{MessageID: m.d.MessageID, Outcome: m.outcome, Reason: m.reason})
		if m.outcome.Severity() > res.Outcome.Severity() {
			res.Outcome = m.outcome
		}
	}
	return res
}
