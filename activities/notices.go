package activities

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/metrics"
	"github.com/syncbridge/syncbridge/internal/store"
)

// NoticeStore is the record-notice outbox (store.Store).
type NoticeStore interface {
	ClaimNotices(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.Notice, error)
	DeleteNotices(ctx context.Context, ns []store.Notice) error
}

// Notices starts the record workflows that make flood mode's conflicts and
// quarantines findable in the Web UI (SyncOutcome), after their messages
// were stored and acked in bulk. Each is a RecordWorkflowV2 run for the
// key whose input carries the message as already done (the state a run
// hands over at continue-as-new): it only sets SyncOutcome and completes,
// holds no body (no patient data reaches Temporal), and takes redeliveries
// of the key by signal like any record run. Workers that know
// RecordWorkflowV2 already run such input, so no new workflow type is
// needed.
//
// Notices a worker got from its own commits are started at once, off the
// drain's path. Every notice is also a row in the outbox, written with the
// conflict or quarantine it announces; the row is deleted once its run
// exists. A worker that dies in between leaves the row, and once its due
// time passes (Lease after the commit) any worker's sweep claims and
// starts it. A start may so happen twice (a sweep racing a slow start):
// that is a second run showing the same outcome, never a hidden record.
type Notices struct {
	Temporal         client.Client
	Store            NoticeStore
	TaskQueue        string
	WorkflowIDPrefix string
	Topic, Group     string
	Metrics          *metrics.Pipeline
	Log              *slog.Logger
	// Lease is how long a notice belongs to the worker that wrote it before
	// another worker's sweep may start it. Zero: 30 s. Sweeps run every
	// Lease/3, so a notice whose worker died is started within about
	// 1.3 x Lease.
	Lease time.Duration
	// Concurrency is how many starts run at once. Zero: 8.
	Concurrency int
	// BeforeStart, if set, runs before each start; a test blocks it to
	// hold notices in the window between commit and start.
	BeforeStart func(context.Context, store.Notice)

	once  sync.Once
	queue chan store.Notice
}

// queueCap bounds the notices held in memory; past it they wait in the
// outbox for a sweep, so a flood of exceptions costs no unbounded memory.
const queueCap = 8192

func (n *Notices) lease() time.Duration {
	if n.Lease > 0 {
		return n.Lease
	}
	return 30 * time.Second
}

func (n *Notices) init() {
	n.once.Do(func() { n.queue = make(chan store.Notice, queueCap) })
}

// Enqueue hands notices of committed messages to the starters. It never
// blocks: what does not fit waits in the outbox for a sweep.
func (n *Notices) Enqueue(ns []store.Notice) {
	n.init()
	for _, x := range ns {
		select {
		case n.queue <- x:
		default:
			n.Metrics.NoticesDeferred.Inc(1)
		}
	}
}

// Run starts notices until ctx ends: those enqueued, and every Lease/3
// those a sweep claims. Notices still queued when ctx ends stay in the
// outbox.
func (n *Notices) Run(ctx context.Context) {
	n.init()
	conc := n.Concurrency
	if conc <= 0 {
		conc = 8
	}
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() { n.starter(ctx) })
	}
	wg.Go(func() { n.sweeper(ctx) })
	wg.Wait()
}

func (n *Notices) sweeper(ctx context.Context) {
	t := time.NewTicker(n.lease() / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		claimed, err := n.Store.ClaimNotices(ctx, time.Now(), n.lease(), queueCap/4)
		if err != nil {
			if ctx.Err() == nil {
				n.Log.Warn("sweeping record notices failed", "error", err)
			}
			continue
		}
		if len(claimed) > 0 {
			n.Log.Info("record notices overdue; starting their record workflows", "notices", len(claimed))
			n.Metrics.NoticesSwept.Inc(int64(len(claimed)))
		}
		for _, x := range claimed {
			select {
			case n.queue <- x:
			case <-ctx.Done():
				return
			}
		}
	}
}

// starter starts queued notices and deletes the delivered ones from the
// outbox in small batches.
func (n *Notices) starter(ctx context.Context) {
	const batch = 32
	for {
		var x store.Notice
		select {
		case <-ctx.Done():
			return
		case x = <-n.queue:
		}
		done := make([]store.Notice, 0, batch)
		for {
			if n.start(ctx, x) {
				done = append(done, x)
			}
			if len(done) == batch {
				break
			}
			var more bool
			select {
			case x, more = <-n.queue:
			default:
			}
			if !more {
				break
			}
		}
		if len(done) == 0 {
			continue
		}
		if err := n.Store.DeleteNotices(context.WithoutCancel(ctx), done); err != nil {
			// The rows come back to a sweep: a second run for the same
			// outcome, not a lost one.
			n.Log.Warn("deleting delivered record notices failed", "notices", len(done), "error", err)
		}
	}
}

// start starts the notice's run and reports whether it exists now. A
// key whose run is running is left to the sweep: that run may close any
// moment, and the notice must then be a run of its own.
func (n *Notices) start(ctx context.Context, x store.Notice) bool {
	if n.BeforeStart != nil {
		n.BeforeStart(ctx, x)
	}
	if ctx.Err() != nil {
		return false
	}
	opts := client.StartWorkflowOptions{
		ID:                                       contract.RecordWorkflowID(n.WorkflowIDPrefix, x.Key),
		TaskQueue:                                n.TaskQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		EnableEagerStart:                         true,
	}
	in := contract.RecordInput{Key: x.Key, Topic: n.Topic, Group: n.Group, Carried: &contract.CarriedState{
		Done: []contract.DoneMessage{{Delivery: contract.Delivery{MessageID: x.MessageID}, Outcome: contract.Outcome(x.Outcome), Reason: x.Reason}},
	}}
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	for attempt := 1; ; attempt++ {
		_, err := n.Temporal.ExecuteWorkflow(ctx, opts, contract.RecordWorkflowV2Name, in)
		if err == nil {
			n.Metrics.NoticesStarted.Inc(1)
			return true
		}
		var already *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &already) {
			return false
		}
		if attempt == 5 || ctx.Err() != nil {
			if ctx.Err() == nil {
				n.Log.Warn("starting a record notice failed; a sweep retries it", "workflowId", opts.ID, "error", err)
			}
			return false
		}
		if !sleep(ctx, nil, backoff.next()) {
			return false
		}
	}
}
