package activities

import (
	"context"
	"log/slog"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	sdklog "go.temporal.io/sdk/log"

	"github.com/syncbridge/syncbridge/internal/contract"
)

// Why park: a message for a key whose record run is still running (the
// broker's duplicate delivery, a republish arriving in the next batch) used
// to be signalled to that run: one more billable action and a second
// local-activity batch, for a run that usually completes within
// milliseconds anyway. A parked message waits, unacked, for the run to
// close and is then handed over again, which settles a duplicate directly
// (settleCompleted) at no Temporal cost. The wait is short (ParkFor): a
// run that is still running after it (an insert that keeps failing) gets
// the message by signal as before, so redeliveries still reach a running
// key. Nothing is acked while parked; a worker that dies with parked
// messages leaves them to the broker's redelivery.

// DefaultParkFor is how long a message for a running key waits for that
// run to close before it is signalled to it.
const DefaultParkFor = 2 * time.Second

// maxParkedKeys bounds the keys with parked messages per worker; past it,
// messages for running keys are signalled at once.
const maxParkedKeys = 256

// parking holds the messages of running keys, per key and in arrival
// order, until their runs close.
type parking struct {
	mu   sync.Mutex
	keys map[string]*parkedKey
	wg   sync.WaitGroup
}

type parkedKey struct {
	queue []parkedDelivery
}

type parkedDelivery struct {
	d     contract.Delivery
	reuse enumspb.WorkflowIdReusePolicy
	bytes int64 // held in Activities.Bodies while parked
}

func (s Settings) parkFor() time.Duration {
	switch {
	case s.ParkFor < 0 || s.LegacyShape:
		return 0
	case s.ParkFor == 0:
		return DefaultParkFor
	}
	return s.ParkFor
}

// park queues d behind key's running run and reports whether it did; false
// means the caller signals it now (parking off, too many keys parked, or
// no room in the body budget).
func (a *Activities) park(ctx context.Context, log sdklog.Logger, key string, d contract.Delivery, reuse enumspb.WorkflowIdReusePolicy) bool {
	wait := a.Settings.parkFor()
	if wait <= 0 {
		return false
	}
	n := int64(len(d.Body))
	if a.Bodies != nil && !a.Bodies.TryAcquire(n) {
		return false
	}
	p := &a.parked
	p.mu.Lock()
	defer p.mu.Unlock()
	if k, ok := p.keys[key]; ok {
		k.queue = append(k.queue, parkedDelivery{d, reuse, n})
		return true
	}
	if len(p.keys) >= maxParkedKeys {
		if a.Bodies != nil {
			a.Bodies.Release(n)
		}
		return false
	}
	if p.keys == nil {
		p.keys = map[string]*parkedKey{}
	}
	k := &parkedKey{queue: []parkedDelivery{{d, reuse, n}}}
	p.keys[key] = k
	a.Metrics.ParkedForRun.Inc(1)
	p.wg.Go(func() { a.unpark(context.WithoutCancel(ctx), log, key, k, wait) })
	return true
}

// hasParked reports whether messages of key are parked.
func (a *Activities) hasParked(key string) bool {
	a.parked.mu.Lock()
	defer a.parked.mu.Unlock()
	_, ok := a.parked.keys[key]
	return ok
}

// unpark waits up to wait for key's run to close, then hands its queue over
// again in order: to settleCompleted when the run completed, by signal when
// it still runs.
func (a *Activities) unpark(ctx context.Context, log sdklog.Logger, key string, k *parkedKey, wait time.Duration) {
	a.waitRunClosed(ctx, key, wait)

	p := &a.parked
	for {
		p.mu.Lock()
		if len(k.queue) == 0 {
			delete(p.keys, key)
			p.mu.Unlock()
			return
		}
		next := k.queue[0]
		k.queue = k.queue[1:]
		p.mu.Unlock()

		hctx, cancel := context.WithTimeout(ctx, a.Settings.PollWait+time.Minute)
		if err := a.startOrSignalNow(hctx, key, next.d, next.reuse); err != nil {
			log.Warn("message left for redelivery", "messageId", next.d.MessageID, "error", err)
		}
		cancel()
		if a.Bodies != nil {
			a.Bodies.Release(next.bytes)
		}
	}
}

// waitRunClosed returns once key's latest run is closed, whatever its end
// (the hand-over after it finds out what that end was), or after wait.
// It asks with DescribeWorkflowExecution at growing intervals (100-500ms,
// each call takes the run's lock on the history service) rather than
// a history long poll under a deadline: a run usually closes within a
// few hundred milliseconds, and long polls cut by their deadline make the
// server log an error for each ("unable to add metrics baggage to gRPC
// trailer").
func (a *Activities) waitRunClosed(ctx context.Context, key string, wait time.Duration) {
	id := contract.RecordWorkflowID(a.Settings.WorkflowIDPrefix, key)
	deadline := time.Now().Add(wait)
	every := 100 * time.Millisecond
	for {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		d, err := a.Temporal.DescribeWorkflowExecution(dctx, id, "")
		cancel()
		if err != nil || d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		if !sleep(ctx, nil, min(every, left)) {
			return
		}
		every = min(2*every, 500*time.Millisecond)
	}
}

// waitParked returns once every parked message is handed over: a poll
// activity does not end with messages of its batches still parked.
func (a *Activities) waitParked() { a.parked.wg.Wait() }

// activityLogger is the activity's logger, or the SDK's default logger for
// callers outside an activity (the benchmark's hand-over).
func activityLogger(ctx context.Context) sdklog.Logger {
	if activity.IsActivity(ctx) {
		return activity.GetLogger(ctx)
	}
	return sdklog.NewStructuredLogger(slog.Default())
}
