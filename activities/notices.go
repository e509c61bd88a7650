package activities

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/metrics"
	"github.com/syncbridge/syncbridge/internal/searchattr"
	"github.com/syncbridge/syncbridge/internal/store"
)

// NoticeStore is the record-notice outbox (store.Store).
type NoticeStore interface {
	ClaimNotices(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.Notice, error)
	DeleteNotices(ctx context.Context, ns []store.Notice) error
}

// Notices makes flood mode's conflicts and quarantines findable in the Web
// UI after their messages were stored and acked in bulk: it starts
// FloodNotice runs, one per batch of notices with the same outcome, with
// SyncOutcome and SyncKeys (the records' keys) set at start. A run per
// record would cost the cluster as much as the record workflows flood mode
// exists to avoid (on the benchmark, those runs took more than half the
// CPU of a drain with 5% exceptions); a run per batch costs one start for
// up to maxNoticeRecords records. The run holds no body, so no patient
// data reaches Temporal.
//
// Notices a worker got from its own commits are started within Linger,
// off the drain's path. Every notice is also a row in the outbox, written
// with the conflict or quarantine it announces; the rows are deleted once
// their run exists. A worker that dies in between leaves the rows, and once
// their due time passes (Lease after the commit) any worker's sweep claims
// and starts them. A record may so be listed by two runs (a sweep racing
// a slow start), never by none.
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
	// NoEagerStart starts notices through matching, as versioned workers
	// start records (Settings.NoEagerStart).
	NoEagerStart bool
	// Concurrency is how many starts run at once. Zero: 2.
	Concurrency int
	// Linger is the longest a notice waits for others of its outcome to
	// fill a run before the run is started. Zero: 1 s. Without it each
	// flood group's few exceptions made runs of their own (one per outcome
	// per group: 47 runs for 2,000 exceptions on the benchmark where 32
	// hold them), and every run costs the cluster a start, a task and two
	// visibility writes, CPU the drain competes for on a small machine.
	Linger time.Duration
	// KeysBytes is the size a run's SyncKeys value is filled to. Zero:
	// 16 KiB, what deploy/'s dynamic config and the dev stack allow
	// (frontend.searchAttributesSizeOfValueLimit). Temporal's default and
	// Temporal Cloud's limit is 2 KiB: a start the server refuses as
	// invalid halves the size for this process, down to that floor, and
	// the run is started in parts that fit. Each halving costs one refused
	// call; a process on Temporal Cloud pays three.
	KeysBytes int
	// BeforeStart, if set, runs before each start; a test blocks it to
	// hold notices in the window between commit and start.
	BeforeStart func(context.Context, store.Notice)

	once  sync.Once
	queue chan store.Notice

	mu   sync.Mutex
	held map[heldBatch]*heldCount // outbox batches with notices in memory

	keysLimit atomic.Int64 // KeysBytes, halved by refusals
}

// heldBatch is an outbox batch under one claim ("" for the worker that
// wrote it): the unit DeleteNotices removes.
type heldBatch struct{ batch, claim string }

// heldCount counts a batch's notices queued or being started; a batch is
// deleted when that reaches 0, unless one of them was dropped or failed to
// start (abandoned): its rows then wait for a sweep.
type heldCount struct {
	n         int
	abandoned bool
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

func (n *Notices) linger() time.Duration {
	if n.Linger > 0 {
		return n.Linger
	}
	return time.Second
}

func (n *Notices) init() {
	n.once.Do(func() {
		n.queue = make(chan store.Notice, queueCap)
		n.held = map[heldBatch]*heldCount{}
		k := n.KeysBytes
		if k <= 0 {
			k = defaultNoticeKeys
		}
		n.keysLimit.Store(int64(max(k, noticeKeysFloor)))
	})
}

// keysBytes is the size runs are filled to now.
func (n *Notices) keysBytes() int { return int(n.keysLimit.Load()) }

// shrink halves the size runs are filled to after the server refused a
// run of size from; false when it is at the floor already.
func (n *Notices) shrink(from int) bool {
	if from <= noticeKeysFloor {
		return false
	}
	to := max(from/2, noticeKeysFloor)
	if n.keysLimit.CompareAndSwap(int64(from), int64(to)) {
		n.Log.Info("Temporal refused a notice run's SyncKeys value; filling runs to a smaller size from now on (raise the namespace's frontend.searchAttributesSizeOfValueLimit, or set SYNCBRIDGE_FLOOD_NOTICE_KEYS_BYTES to it, to spare the refusal)",
			"bytes", from, "now", to)
	}
	return true
}

// hold counts ns as held before any of them is queued, so a batch cannot
// be delivered, and deleted, while the rest of its notices are still on
// their way to the queue.
func (n *Notices) hold(ns []store.Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range ns {
		if x.Batch == "" {
			continue
		}
		k := heldBatch{x.Batch, x.Claim}
		c := n.held[k]
		if c == nil {
			c = &heldCount{}
			n.held[k] = c
		}
		c.n++
	}
}

// release uncounts ns, delivered (their run exists) or not, and returns
// what of them may leave the outbox: the record_notices rows of delivered
// ones, and one notice for each batch now fully delivered.
func (n *Notices) release(ns []store.Notice, delivered bool) []store.Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []store.Notice
	for _, x := range ns {
		if x.Batch == "" {
			if delivered {
				out = append(out, x)
			}
			continue
		}
		k := heldBatch{x.Batch, x.Claim}
		c := n.held[k]
		if c == nil {
			continue
		}
		c.n--
		if !delivered {
			c.abandoned = true
		}
		if c.n == 0 {
			delete(n.held, k)
			if !c.abandoned {
				out = append(out, x)
			}
		}
	}
	return out
}

// Enqueue hands notices of committed messages to the starters. It never
// blocks: what does not fit waits in the outbox for a sweep.
func (n *Notices) Enqueue(ns []store.Notice) {
	n.init()
	n.hold(ns)
	for _, x := range ns {
		select {
		case n.queue <- x:
		default:
			n.Metrics.NoticesDeferred.Inc(1)
			n.release([]store.Notice{x}, false)
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
		conc = 2
	}
	runs := make(chan []store.Notice)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() { n.starter(ctx, runs) })
	}
	wg.Go(func() { n.collect(ctx, runs) })
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
		n.hold(claimed)
		for _, x := range claimed {
			select {
			case n.queue <- x:
			case <-ctx.Done():
				return
			}
		}
	}
}

// Bounds of one notice run: the records it lists, and the size of its
// SyncKeys value. Temporal checks each search attribute value's encoded
// size against a per-value limit; the keys are counted as the SDK encodes
// them, a JSON array. With the benchmark's 26-byte keys, 2 KiB holds 70
// keys a run and 16 KiB about 560, of which maxNoticeRecords are taken:
// on the rehearsal cluster every run cost its server and PostgreSQL about
// 25 ms of CPU, whatever it listed, so the fewer the better. The records
// in its input and result then take about 50 KiB of history each way.
const (
	maxNoticeRecords  = 512
	noticeKeysFloor   = 2048
	defaultNoticeKeys = 16 << 10
)

// openRun is a notice run being filled.
type openRun struct {
	notices []store.Notice
	size    int // of the SyncKeys value so far: "[", each key and its ","
	since   time.Time
}

// fits reports whether x joins r within both bounds, the value's being
// limit; the closing "]" takes the place of the last ",".
func (r *openRun) fits(x store.Notice, limit int) bool {
	return len(r.notices) < maxNoticeRecords && r.size+encodedKeySize(x.Key) <= limit
}

func (r *openRun) add(x store.Notice) {
	if r.size == 0 {
		r.size = 1
	}
	r.notices = append(r.notices, x)
	r.size += encodedKeySize(x.Key)
}

// encodedKeySize is key's size in the SyncKeys value: its JSON string and
// a separator.
func encodedKeySize(key string) int {
	b, _ := json.Marshal(key) // a string always encodes
	return len(b) + 1
}

// collect fills runs from the queue, one open run per outcome (a run shows
// one SyncOutcome), and hands a run to the starters once it is full or its
// first notice has waited Linger: runs so list the exceptions of many
// flood groups, not each group's few.
func (n *Notices) collect(ctx context.Context, runs chan<- []store.Notice) {
	open := map[string]*openRun{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// handOver passes on the open run of outcome; false once ctx ended
	// (its rows then wait in the outbox for a sweep).
	handOver := func(outcome string) bool {
		r := open[outcome]
		delete(open, outcome)
		select {
		case runs <- r.notices:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		// Wake when the oldest open run has waited Linger.
		var oldest time.Time
		for _, r := range open {
			if oldest.IsZero() || r.since.Before(oldest) {
				oldest = r.since
			}
		}
		if !oldest.IsZero() {
			timer.Reset(time.Until(oldest.Add(n.linger())))
		}
		select {
		case <-ctx.Done():
			return
		case x := <-n.queue:
			if r := open[x.Outcome]; r != nil && !r.fits(x, n.keysBytes()) && !handOver(x.Outcome) {
				return
			}
			r := open[x.Outcome]
			if r == nil {
				r = &openRun{since: time.Now()}
				open[x.Outcome] = r
			}
			r.add(x)
			if len(r.notices) == maxNoticeRecords && !handOver(x.Outcome) {
				return
			}
		case <-timer.C:
			for outcome, r := range open {
				if time.Since(r.since) >= n.linger() && !handOver(outcome) {
					return
				}
			}
		}
	}
}

// starter starts the runs collect hands over, and deletes their notices
// from the outbox once the run exists.
func (n *Notices) starter(ctx context.Context, runs <-chan []store.Notice) {
	for {
		var run []store.Notice
		select {
		case <-ctx.Done():
			return
		case run = <-runs:
		}
		if !n.start(ctx, run) {
			n.release(run, false) // the rows wait for a sweep
			continue
		}
		gone := n.release(run, true)
		if len(gone) == 0 {
			continue
		}
		if err := n.Store.DeleteNotices(context.WithoutCancel(ctx), gone); err != nil {
			// The rows come back to a sweep: a record listed twice, not
			// a hidden one.
			n.Log.Warn("deleting delivered record notices failed", "notices", len(gone), "error", err)
		}
	}
}

// start starts the notice runs of group and reports whether they all
// exist now: one run, or parts of it when the server refused its size.
func (n *Notices) start(ctx context.Context, group []store.Notice) bool {
	if n.BeforeStart != nil {
		for _, x := range group {
			n.BeforeStart(ctx, x)
		}
	}
	for len(group) > 0 {
		if ctx.Err() != nil {
			return false
		}
		limit := n.keysBytes()
		part := &openRun{}
		for _, x := range group {
			if len(part.notices) > 0 && !part.fits(x, limit) {
				break
			}
			part.add(x)
		}
		switch n.startRun(ctx, part.notices, part.size) {
		case runStarted:
			group = group[len(part.notices):]
		case runTooBig:
			if !n.shrink(limit) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

type runStart int

const (
	runFailed runStart = iota
	runStarted
	runTooBig // refused as invalid with a SyncKeys value over the floor
)

// startRun starts the notice run listing group, whose SyncKeys value takes
// about keysSize bytes.
func (n *Notices) startRun(ctx context.Context, group []store.Notice, keysSize int) runStart {
	in := contract.FloodNoticeInput{Outcome: contract.Outcome(group[0].Outcome), Topic: n.Topic, Group: n.Group}
	keys := make([]string, 0, len(group))
	type listed struct{ key, messageID string }
	seen := make(map[listed]bool, len(group))
	for _, x := range group {
		// A redelivery committed while its first copy's notice was
		// pending is listed in a batch of its own; once is enough.
		if seen[listed{x.Key, x.MessageID}] {
			continue
		}
		seen[listed{x.Key, x.MessageID}] = true
		in.Records = append(in.Records, contract.NoticeRecord{Key: x.Key, MessageID: x.MessageID, Reason: x.Reason})
		keys = append(keys, x.Key)
	}
	opts := client.StartWorkflowOptions{
		ID:        contract.FloodNoticeWorkflowID(n.WorkflowIDPrefix, in),
		TaskQueue: n.TaskQueue,
		// The ID is the notice's content: one that exists, open or
		// closed, is this notice delivered.
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		EnableEagerStart:                         !n.NoEagerStart,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			searchattr.Outcome.ValueSet(group[0].Outcome), searchattr.Keys.ValueSet(keys)),
	}
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	for attempt := 1; ; attempt++ {
		_, err := n.Temporal.ExecuteWorkflow(ctx, opts, contract.FloodNoticeWorkflowName, in)
		var already *serviceerror.WorkflowExecutionAlreadyStarted
		if err == nil || errors.As(err, &already) {
			n.Metrics.NoticesStarted.Inc(int64(len(group)))
			return runStarted
		}
		var invalid *serviceerror.InvalidArgument
		if errors.As(err, &invalid) && keysSize > noticeKeysFloor {
			return runTooBig
		}
		if attempt == 5 || ctx.Err() != nil {
			if ctx.Err() == nil {
				n.Log.Warn("starting a flood notice failed; a sweep retries it", "workflowId", opts.ID, "records", len(group), "error", err)
			}
			return runFailed
		}
		if !sleep(ctx, nil, backoff.next()) {
			return runFailed
		}
	}
}
