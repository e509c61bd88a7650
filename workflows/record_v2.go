package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/syncbridge/syncbridge/activities"
	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/searchattr"
)

// The lean record path. Its happy path (insert or duplicate, then ack) is
// one workflow task: WorkflowExecutionStarted, the task's scheduled,
// started and completed events, a marker per local activity (insert,
// ack) and WorkflowExecutionCompleted, seven events and two billable
// actions (the start and one local-activity batch).
const (
	// localAttempts is how many times insert, quarantine and ack are tried
	// inside the workflow task before the record falls back to a regular
	// activity. Kept small so a record stuck on the database shows up in the
	// Web UI as a pending activity with its attempt count and last error
	// within seconds, as the old shape did.
	localAttempts = 3
)

// maxSignalsPerRun and maxHistoryEvents bound one run's history. A record
// whose insert is stuck while the broker keeps redelivering gets a signal
// per redelivery; without a bound its history would reach Temporal's
// 51,200-event or 10,000-signal limits and the run would be terminated
// with the delivery unacked. Past either bound the run continues as new,
// carrying its state without committed bodies. Variables so tests can
// lower them.
var (
	maxSignalsPerRun = 1000
	maxHistoryEvents = 10000
)

var localOptions = workflow.LocalActivityOptions{
	// The insert waits for a group-commit slot and its transaction; ten
	// seconds covers a busy pool without letting a hung database hold the
	// workflow task for long.
	StartToCloseTimeout:    10 * time.Second,
	ScheduleToCloseTimeout: 30 * time.Second,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:        200 * time.Millisecond,
		BackoffCoefficient:     2,
		MaximumInterval:        2 * time.Second,
		MaximumAttempts:        localAttempts,
		NonRetryableErrorTypes: []string{contract.ErrTypeBadInput},
	},
}

// errContinueAsNew unwinds the record loop when the run's history is long
// enough to hand over to a new run.
var errContinueAsNew = errors.New("record history bound reached")

type leanRecord struct {
	*record
	ch      workflow.ReceiveChannel
	signals int
}

// RecordWorkflowV2 commits every message delivered for one key, then acks
// its receipt handles, like RecordWorkflow, at a fraction of the cost: the
// first delivery is the workflow input (no signal), insert and ack are
// local activities (no activity tasks through the server), and the
// SyncOutcome attribute is written only for outcomes that need a person.
// Redeliveries of a running key still arrive by signal; the run still ends
// only when no delivery is left unacked, and the completion race is the
// same as RecordWorkflow's: a signal arriving while the run completes
// makes the server reject the completion, and the replayed task sees it.
func RecordWorkflowV2(ctx workflow.Context, in contract.RecordInput) (contract.RecordResult, error) {
	r := &leanRecord{record: &record{in: in, byID: map[string]*message{}}}
	r.restore(in.Carried)
	for _, d := range in.Initial {
		r.receive(d)
	}
	r.ch = workflow.GetSignalChannel(ctx, contract.SignalDelivery)
	r.drainSignals()

	if len(r.msgs) == 0 {
		var d contract.Delivery
		ok, _ := r.ch.ReceiveWithTimeout(ctx, FirstDeliveryTimeout, &d)
		if !ok {
			workflow.GetLogger(ctx).Warn("record workflow started without a delivery", "key", in.Key)
			return contract.RecordResult{Key: in.Key}, nil
		}
		r.take(d)
	}

	for {
		r.drainSignals()
		if r.historyFull(ctx) {
			return r.continueAsNew(ctx)
		}
		var err error
		if m := r.nextPending(); m != nil {
			err = r.commit(ctx, m)
		} else if handles := r.unacked(); len(handles) > 0 {
			err = r.ack(ctx, handles)
		} else {
			// Nothing pending after a drain; see the completion race above.
			break
		}
		if errors.Is(err, errContinueAsNew) {
			return r.continueAsNew(ctx)
		}
		if err != nil {
			return contract.RecordResult{}, err
		}
	}

	res := r.result()
	if res.Outcome.NeedsPerson() {
		if err := workflow.UpsertTypedSearchAttributes(ctx, searchattr.Outcome.ValueSet(string(res.Outcome))); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (r *leanRecord) take(d contract.Delivery) {
	r.signals++
	r.receive(d)
}

func (r *leanRecord) drainSignals() {
	for {
		var d contract.Delivery
		if !r.ch.ReceiveAsync(&d) {
			return
		}
		r.take(d)
	}
}

func (r *leanRecord) historyFull(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return r.signals >= maxSignalsPerRun || info.GetCurrentHistoryLength() >= maxHistoryEvents || info.GetContinueAsNewSuggested()
}

// await waits for f while taking in redeliveries, and gives up waiting
// (errContinueAsNew) when they have filled the run's history. What f was
// doing is then redone by the next run: inserts and acks are idempotent.
func (r *leanRecord) await(ctx workflow.Context, f workflow.Future, valuePtr interface{}) error {
	for !f.IsReady() {
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(f, func(workflow.Future) {})
		sel.AddReceive(r.ch, func(c workflow.ReceiveChannel, _ bool) {
			var d contract.Delivery
			c.Receive(ctx, &d)
			r.take(d)
		})
		sel.Select(ctx)
		if !f.IsReady() && r.historyFull(ctx) {
			return errContinueAsNew
		}
	}
	return f.Get(ctx, valuePtr)
}

// run executes an activity locally for a few short attempts and, if those
// fail for any reason but bad input, as a regular activity with retry
// (usually unlimited): the record then waits visibly, as a pending activity
// with its attempt count and last error, instead of inside a workflow task.
func (r *leanRecord) run(ctx workflow.Context, fn, arg, valuePtr interface{}, retry *temporal.RetryPolicy, startToClose time.Duration) error {
	lctx := workflow.WithLocalActivityOptions(ctx, localOptions)
	err := r.await(ctx, workflow.ExecuteLocalActivity(lctx, fn, arg), valuePtr)
	if err == nil || errors.Is(err, errContinueAsNew) {
		return err
	}
	if _, _, bad := activities.BadInputReason(err); bad {
		return err
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: startToClose,
		RetryPolicy:         retry,
	})
	return r.await(ctx, workflow.ExecuteActivity(actx, fn, arg), valuePtr)
}

func (r *leanRecord) commit(ctx workflow.Context, m *message) error {
	var a *activities.Activities
	var out activities.InsertResult
	err := r.run(ctx, a.Insert, activities.InsertInput{Key: r.in.Key, Delivery: m.d}, &out, dbRetry, 30*time.Second)
	if err == nil {
		m.done, m.outcome = true, out.Outcome
		return nil
	}
	reason, msg, bad := activities.BadInputReason(err)
	if !bad {
		return err
	}
	q := activities.QuarantineInput{Key: r.in.Key, Delivery: m.d, Reason: reason, Detail: msg}
	if err := r.run(ctx, a.Quarantine, q, nil, dbRetry, 30*time.Second); err != nil {
		return err
	}
	m.done, m.outcome, m.reason = true, contract.OutcomeQuarantined, reason
	return nil
}

func (r *leanRecord) ack(ctx workflow.Context, handles []string) error {
	var a *activities.Activities
	var res activities.AckResult
	if err := r.run(ctx, a.Ack, activities.AckInput{Handles: handles}, &res, ackRetry, 45*time.Second); err != nil {
		return err
	}
	r.markAcked(handles, res)
	return nil
}

// restore takes over the state a previous run carried.
func (r *leanRecord) restore(c *contract.CarriedState) {
	if c == nil {
		return
	}
	r.acked, r.refus = c.Acked, c.AckExpired
	for _, dm := range c.Done {
		m := &message{d: dm.Delivery, done: true, outcome: dm.Outcome, reason: dm.Reason, ackedFor: dm.AckedFor}
		r.msgs = append(r.msgs, m)
		r.byID[dm.Delivery.MessageID] = m
	}
}

// continueAsNew hands the record to a fresh run: uncommitted deliveries as
// its input (they still need their bodies), committed ones without bodies.
// Signals already delivered to this task are drained first, since a
// continue-as-new would drop them; ones arriving later make the server
// reject it, and this task is replayed with them.
func (r *leanRecord) continueAsNew(ctx workflow.Context) (contract.RecordResult, error) {
	r.drainSignals()
	next := contract.RecordInput{Key: r.in.Key, Topic: r.in.Topic, Group: r.in.Group,
		Carried: &contract.CarriedState{Acked: r.acked, AckExpired: r.refus}}
	for _, m := range r.msgs {
		if !m.done {
			next.Initial = append(next.Initial, m.d)
			continue
		}
		d := m.d
		d.Body = nil
		next.Carried.Done = append(next.Carried.Done, contract.DoneMessage{Delivery: d, Outcome: m.outcome, Reason: m.reason, AckedFor: m.ackedFor})
	}
	workflow.GetLogger(ctx).Info("record history bound reached; continuing as new", "key", r.in.Key, "signals", r.signals)
	return contract.RecordResult{}, workflow.NewContinueAsNewError(ctx, contract.RecordWorkflowV2Name, next)
}
