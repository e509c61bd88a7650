package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

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

// PollHeartbeatEvery is how often the poll activity records a heartbeat
// from its own ticker, whatever it is doing (a long poll of up to 30 s, a
// batch's hand-over, a pause at the in-flight cap).
const PollHeartbeatEvery = 2 * time.Second

// PollHeartbeatTimeout is the poll activity's heartbeat timeout: short, so
// a poll whose worker was killed is retried on another worker within
// seconds instead of after a minute.
const PollHeartbeatTimeout = 10 * time.Second

// HeartbeatSendEvery is the most time the SDK lets pass between sending
// recorded heartbeats to the server (worker.Options
// MaxHeartbeatThrottleInterval). The SDK also gives each send only this
// long and cancels the activity when a send fails, so a send has
// min(HeartbeatSendEvery, PollHeartbeatTimeout-HeartbeatSendEvery) to land:
// half the timeout is the most. At 2 s, a server answering in 2.1 s (the
// race-built test server under load) cancelled polls again and again, and
// their retries backed off until the drain stalled.
const HeartbeatSendEvery = PollHeartbeatTimeout / 2

// Poll drains the topic into record workflows until RunFor elapses or the
// worker stops. Each message is handed to its key's record workflow:
//   - no workflow for the key, or the last one failed: a new run starts
//     with the delivery as its input (eagerly, on this worker when it has
//     room);
//   - a running workflow: it receives the new receipt handle by signal;
//   - a completed workflow: the message is committed idempotently here (the
//     database decides duplicate or conflict) and acked; one that needs a
//     person (conflict, bad input) gets a run of its own so that the Web
//     UI's SyncOutcome filter finds it.
//
// Messages of a batch are handed over concurrently, keys in parallel and
// the messages of one key in arrival order. What Temporal would refuse on
// every redelivery (an ID or payload over its limits, a reserved ID, an
// InvalidArgument answer) is quarantined and acked at once; a message whose
// hand-over fails otherwise (Temporal unreachable) is left unacked, and the
// broker redelivers it after its invisibility time. The poller never acks a
// message it has not committed, quarantined or handed over.
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

	var mu sync.Mutex // res, read by the heartbeat ticker
	stopBeat := heartbeatEvery(ctx, PollHeartbeatEvery, func() any {
		mu.Lock()
		defer mu.Unlock()
		return res
	})
	defer stopBeat()
	var fl floodPipe // flood mode's group being settled (flood.go)
	defer fl.wait()
	defer a.waitParked() // park.go

	for time.Now().Before(deadline) {
		select {
		case <-stop:
			mu.Lock()
			res.Stopped = true
			mu.Unlock()
			return res, nil
		case <-ctx.Done():
			// Cancelled by the poller workflow (stop) or timed out: the
			// previous batch is fully handed over, so returning is clean.
			return res, ctx.Err()
		default:
		}

		if wait, err := a.overCap(ctx); err != nil || wait {
			if err != nil {
				log.Warn("in-flight cap unknown; pausing", "error", err)
			}
			a.Metrics.PollThrottled.Inc(1)
			sleep(ctx, stop, time.Second)
			continue
		}

		// Once a consume call starts, its batch is seen through even if
		// the activity is cancelled or the worker is stopping: abandoning
		// it would leave the batch invisible for the broker's whole
		// invisibility time. Bounded by the long poll plus hand-over.
		batchCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.Settings.PollWait+time.Minute)
		n, err := a.pollOnce(batchCtx, ctx, &fl)
		cancel()
		if err != nil {
			a.Metrics.PollErrors.Inc(1)
			log.Warn("consume failed", "error", err)
			sleep(ctx, stop, backoff.next())
			continue
		}
		backoff.reset()
		if n > 0 {
			mu.Lock()
			res.Batches++
			res.Messages += n
			mu.Unlock()
		}
	}
	return res, nil
}

// heartbeatEvery heartbeats ctx's activity every d with details() until
// the returned stop is called.
func heartbeatEvery(ctx context.Context, d time.Duration, details func() any) (stop func()) {
	activity.RecordHeartbeat(ctx, details())
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				activity.RecordHeartbeat(ctx, details())
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// pollOnce consumes one batch and hands every message over. Hand-over
// failures leave that message for redelivery and do not fail the batch.
func (a *Activities) pollOnce(batchCtx, logCtx context.Context, fl *floodPipe) (int, error) {
	if a.Settings.Flood.Enabled {
		return a.pollFlood(batchCtx, activity.GetLogger(logCtx), fl)
	}
	msgs, done, err := a.consume(batchCtx, a.Settings.PollWait)
	if err != nil {
		return 0, err
	}
	defer done()
	a.handOverBatch(batchCtx, activity.GetLogger(logCtx), msgs)
	return len(msgs), nil
}

// consume fetches one batch within the worker's budget of body bytes
// (Activities.Bodies): room for a full batch of the largest bodies is
// reserved before the call, the unused part given back after it, and the
// rest when the caller calls done, once the batch is handed over. So the
// bodies all pollers of a worker hold never pass the budget, however
// large the messages.
func (a *Activities) consume(ctx context.Context, wait time.Duration) (msgs []mqclient.Message, done func(), err error) {
	reserve := int64(a.Settings.BatchSize) * int64(a.Settings.maxBodyBytes())
	if a.Bodies != nil {
		if err := a.Bodies.Acquire(ctx, reserve); err != nil {
			return nil, nil, fmt.Errorf("wait for room for message bodies: %w", err)
		}
	}
	msgs, err = a.Consumer.Consume(ctx, a.Settings.BatchSize, wait)
	var held int64
	for _, m := range msgs {
		held += int64(len(m.Body))
	}
	if a.Bodies != nil {
		a.Bodies.Release(reserve - min(held, reserve))
	}
	done = func() {
		if a.Bodies != nil {
			a.Bodies.Release(min(held, reserve))
		}
	}
	if err != nil {
		done()
		return nil, nil, err
	}
	a.Metrics.MessagesPolled.Inc(int64(len(msgs)))
	return msgs, done, nil
}

// HandOverBatch hands a consumed batch over as the poller does, for
// callers outside a poll (the benchmark's ceiling). A function, not a
// method: every exported method of Activities is registered as an
// activity.
func HandOverBatch(ctx context.Context, a *Activities, log sdklog.Logger, msgs []mqclient.Message) {
	a.handOverBatch(ctx, log, msgs)
}

// handOverBatch hands a consumed batch over with bounded concurrency;
// failures are logged to log and leave their message for redelivery. The messages of
// one key stay in arrival order, one after another, so the first delivered
// version of a record becomes its row and a later, different one its
// conflict, as a serial hand-over would decide.
func (a *Activities) handOverBatch(ctx context.Context, log sdklog.Logger, msgs []mqclient.Message) {
	conc := a.Settings.HandoverConcurrency
	if conc <= 0 {
		conc = 16
	}
	if a.Settings.LegacyShape {
		conc = 1
	}
	var groups [][]mqclient.Message
	byKey := map[string]int{}
	for _, m := range msgs {
		if i, ok := byKey[m.Key]; ok && m.Key != "" {
			groups[i] = append(groups[i], m)
			continue
		}
		byKey[m.Key] = len(groups)
		groups = append(groups, []mqclient.Message{m})
	}
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for _, g := range groups {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for _, m := range g {
				if err := a.handOver(ctx, m); err != nil {
					log.Warn("message left for redelivery", "messageId", m.MessageID, "error", err)
				}
			}
		}()
	}
	wg.Wait()
}

// overCap reports whether running record workflows have reached the cap.
// The count comes from inflightCache (at most one visibility query per
// second per worker); an error means the count is unknown and the caller
// must not poll.
func (a *Activities) overCap(ctx context.Context) (bool, error) {
	if a.Settings.MaxInFlight <= 0 {
		return false, nil
	}
	n, fresh, err := a.inflight.estimate(ctx, a.Temporal, a.Settings.TaskQueue, time.Now())
	if errors.Is(err, errCountStale) {
		return true, err
	}
	if fresh {
		a.Metrics.InFlight.Update(float64(n))
	}
	if err != nil {
		activity.GetLogger(ctx).Warn("counting running records failed; using the last count", "error", err)
	}
	return n >= int64(a.Settings.MaxInFlight), nil
}

func deliveryOf(m mqclient.Message) contract.Delivery {
	return contract.Delivery{
		MessageID:       m.MessageID,
		ReceiptHandle:   m.ReceiptHandle,
		Tag:             m.Tag,
		Body:            m.Body,
		ConsumedTimes:   m.ConsumedTimes,
		NextConsumeTime: m.NextConsumeTime,
	}
}

// handOver gives one message to its record workflow.
func (a *Activities) handOver(ctx context.Context, m mqclient.Message) error {
	d := deliveryOf(m)
	if m.Key == "" {
		// No key, no workflow ID: quarantine directly, then ack.
		return a.commitAndAck(ctx, "", d)
	}
	// What Temporal would refuse on every redelivery is quarantined now
	// (handover_check.go), not left to be dead-lettered unseen.
	if reason, detail, ok := a.Settings.CheckHandover(m.Key, d); !ok {
		return a.quarantineAndAck(ctx, m.Key, d, reason, detail)
	}
	if a.Settings.LegacyShape {
		return a.handOverLegacy(ctx, m.Key, d)
	}
	// A failed, terminated or timed-out record may run again; a completed
	// one may not: its redeliveries are duplicates, settled here.
	return a.startOrSignal(ctx, m.Key, d, enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY)
}

// maxHandoverRounds bounds start/signal races (a run completing between our
// start and our signal, again and again) before the message is left for
// redelivery.
const maxHandoverRounds = 5

// startOrSignal starts a lean record run with d as its input or, when the
// key's run is running, signals d to it. A start with conflict policy FAIL
// (unlike signal-with-start) can be eager: the first workflow task comes
// back in the start response and runs on this worker without a trip
// through matching.
func (a *Activities) startOrSignal(ctx context.Context, key string, d contract.Delivery, reuse enumspb.WorkflowIdReusePolicy) error {
	return a.startOrSignalPark(ctx, key, d, reuse, true)
}

// startOrSignalNow is startOrSignal for a message that already waited for
// its key's run (park.go): a run still running gets it by signal.
func (a *Activities) startOrSignalNow(ctx context.Context, key string, d contract.Delivery, reuse enumspb.WorkflowIdReusePolicy) error {
	return a.startOrSignalPark(ctx, key, d, reuse, false)
}

func (a *Activities) startOrSignalPark(ctx context.Context, key string, d contract.Delivery, reuse enumspb.WorkflowIdReusePolicy, mayPark bool) error {
	opts := client.StartWorkflowOptions{
		ID:                                       contract.RecordWorkflowID(a.Settings.WorkflowIDPrefix, key),
		TaskQueue:                                a.Settings.TaskQueue,
		WorkflowIDReusePolicy:                    reuse,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		EnableEagerStart:                         !a.Settings.NoEagerStart,
	}
	if mayPark && a.hasParked(key) && a.park(ctx, activityLogger(ctx), key, d, reuse) {
		// An earlier message of the key waits for its run to close; this
		// one queues behind it. Were its run to close as failed, a start
		// now would put this message in a new run before the earlier one.
		return nil
	}
	input := contract.RecordInput{Key: key, Topic: a.Settings.Topic, Group: a.Settings.Group, Initial: []contract.Delivery{d}}
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	for round := 0; round < maxHandoverRounds; {
		_, err := a.Temporal.ExecuteWorkflow(ctx, opts, contract.RecordWorkflowV2Name, input)
		if err == nil {
			a.Metrics.WorkflowsStarted.Inc(1)
			a.inflight.noteStarted()
			a.running.noteStarted(opts.ID)
			return nil
		}
		var already *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &already) {
			if mayPark && a.park(ctx, activityLogger(ctx), key, d, reuse) {
				return nil // handed over once the run closes (park.go)
			}
			round++
			err = a.Temporal.SignalWorkflow(ctx, opts.ID, "", contract.SignalDelivery, d)
			var notFound *serviceerror.NotFound
			switch {
			case err == nil:
				a.Metrics.SignalledRunning.Inc(1)
				a.running.noteStarted(opts.ID)
				return nil
			case errors.As(err, &notFound) && reuse == enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY:
				// Closed and not to be rerun: it completed.
				a.Metrics.DuplicatesByWorkflowID.Inc(1)
				return a.settleCompleted(ctx, key, d)
			case errors.As(err, &notFound):
				continue // completed between our start and our signal: start again
			}
		}
		var exhausted *serviceerror.ResourceExhausted
		if errors.As(err, &exhausted) {
			// Temporal is shedding load: slow down rather than skip.
			a.Metrics.PollThrottled.Inc(1)
			if !sleep(ctx, nil, backoff.next()) {
				return ctx.Err()
			}
			continue
		}
		if reason, ok := IsPermanentHandoverError(err); ok { // handover_check.go
			return a.refusedHandover(ctx, key, d, reason, err)
		}
		return fmt.Errorf("hand over to %s: %w", opts.ID, err)
	}
	return fmt.Errorf("hand over to %s: its runs kept completing during %d attempts", opts.ID, maxHandoverRounds)
}

// settleCompleted handles a message whose key's record already completed.
// A duplicate (the common case: a redelivery) is committed and acked here
// without a workflow. A conflict or bad input needs a person; the database
// already holds the conflict, and a new run of the key's record settles it
// again (idempotently) so SyncOutcome shows it in the Web UI.
func (a *Activities) settleCompleted(ctx context.Context, key string, d contract.Delivery) error {
	out, err := a.commit(ctx, key, d, a.pollerInsertFailed)
	if err != nil || out.NeedsPerson() {
		// Bad input, a conflict, or a database error: a run of the key's
		// record settles it durably (retries visible in the Web UI,
		// bounded for errors nobody classified) instead of the message
		// going round the broker until it is dead-lettered.
		return a.startOrSignal(ctx, key, d, enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE)
	}
	a.Metrics.Outcome(string(out))
	_, err = a.Ack(ctx, AckInput{Handles: []string{d.ReceiptHandle}})
	return err
}

// pollerInsertFailed classifies a database error met by the poller
// itself: it has no retry history of its own for the message (a failure
// leaves the message to a record workflow or to redelivery), so only bad
// data is final here.
func (a *Activities) pollerInsertFailed(err error) error {
	now := time.Now()
	return a.insertFailedAt(err, now, now, 1)
}

// handOverLegacy is the pre-lean hand-over (see Settings.LegacyShape).
func (a *Activities) handOverLegacy(ctx context.Context, key string, d contract.Delivery) error {
	opts := client.StartWorkflowOptions{
		ID:                       contract.RecordWorkflowID(a.Settings.WorkflowIDPrefix, key),
		TaskQueue:                a.Settings.TaskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}
	input := contract.RecordInput{Key: key, Topic: a.Settings.Topic, Group: a.Settings.Group}
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		_, err := a.Temporal.SignalWithStartWorkflow(ctx, opts.ID, contract.SignalDelivery, d, opts, contract.RecordWorkflowName, input)
		var already *serviceerror.WorkflowExecutionAlreadyStarted
		var exhausted *serviceerror.ResourceExhausted
		switch {
		case err == nil:
			a.Metrics.WorkflowsStarted.Inc(1)
			a.inflight.noteStarted()
			a.running.noteStarted(opts.ID)
			return nil
		case errors.As(err, &already):
			a.Metrics.DuplicatesByWorkflowID.Inc(1)
			return a.commitAndAck(ctx, key, d)
		case errors.As(err, &exhausted):
			a.Metrics.PollThrottled.Inc(1)
			if !sleep(ctx, nil, backoff.next()) {
				return ctx.Err()
			}
		default:
			if reason, ok := IsPermanentHandoverError(err); ok { // handover_check.go
				return a.refusedHandover(ctx, key, d, reason, err)
			}
			return fmt.Errorf("signal-with-start %s: %w", opts.ID, err)
		}
	}
}

// commitAndAck handles a message outside any record workflow (no key, or
// the key's workflow already completed): commit or quarantine, then ack.
func (a *Activities) commitAndAck(ctx context.Context, key string, d contract.Delivery) error {
	out, err := a.commit(ctx, key, d, a.pollerInsertFailed)
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
