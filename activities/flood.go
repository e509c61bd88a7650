package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	sdklog "go.temporal.io/sdk/log"
	"golang.org/x/time/rate"

	"github.com/syncbridge/syncbridge/internal/contract"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// Flood mode: after a gateway reopens, days of buffered records arrive at
// once, and a workflow per clean message costs more than the message is
// worth. In flood mode the poller commits clean messages itself, many per
// transaction, with the same idempotent semantics (unique key, duplicate
// by payload hash, conflict kept), acks them after COMMIT, and hands only
// the exceptions to their keys' record workflows: bad input, conflicts,
// keys whose record workflow is running, and messages whose bulk commit
// failed. Those stay visible in the Web UI and are retried durably there.

// Flood tunes flood mode; zero values mean the documented defaults.
type Flood struct {
	Enabled bool
	// Batches is how many consume calls one group gathers at most. 0: 16.
	// Each group costs a transaction and a visibility query for its
	// running keys; on the benchmark, groups of 16 calls drained 1.5x
	// faster than groups of 4, and 32 no faster.
	Batches int
	// Bytes bounds the bodies of one group. 0: 4 MiB.
	Bytes int
	// Linger is the longest a group keeps gathering batches. 0: 200ms.
	Linger time.Duration
	// RowsPerSecond limits bulk-committed rows per worker process; 0 is
	// no limit.
	RowsPerSecond float64
	// SlowCommit is the commit latency above which groups shrink (and grow
	// back once commits are fast again). 0: 2s.
	SlowCommit time.Duration
}

func (f Flood) withDefaults() Flood {
	if f.Batches <= 0 {
		f.Batches = 16
	}
	if f.Bytes <= 0 {
		f.Bytes = 4 << 20
	}
	if f.Linger <= 0 {
		f.Linger = 200 * time.Millisecond
	}
	if f.SlowCommit <= 0 {
		f.SlowCommit = 2 * time.Second
	}
	return f
}

// BulkInserter stores a flood group (store.InsertFlood).
type BulkInserter interface {
	InsertFlood(ctx context.Context, evs []syncevent.Event, bad []store.QuarantineEntry, noticeDue time.Time) store.FloodResult
}

// floodState is shared by the pollers of one worker process.
type floodState struct {
	once    sync.Once
	limiter *rate.Limiter
	mu      sync.Mutex
	batches int // current group size in consume calls, adapted to commit latency
}

func (a *Activities) floodInit() Flood {
	f := a.Settings.Flood.withDefaults()
	a.flood.once.Do(func() {
		a.flood.batches = f.Batches
		a.Metrics.FloodGroupBatches.Update(float64(f.Batches))
		if f.RowsPerSecond > 0 {
			a.flood.limiter = rate.NewLimiter(rate.Limit(f.RowsPerSecond), max(1, int(f.RowsPerSecond)))
		}
	})
	return f
}

func (a *Activities) groupBatches() int {
	a.flood.mu.Lock()
	defer a.flood.mu.Unlock()
	return a.flood.batches
}

// adapt shrinks the group after a slow commit and grows it back after a
// fast one: when the database slows down the poller asks less of it
// instead of piling up connections.
func (a *Activities) adapt(f Flood, took time.Duration) (slow bool) {
	a.flood.mu.Lock()
	defer a.flood.mu.Unlock()
	defer func() { a.Metrics.FloodGroupBatches.Update(float64(a.flood.batches)) }()
	if took > f.SlowCommit {
		a.flood.batches = max(1, a.flood.batches/2)
		return true
	}
	if a.flood.batches < f.Batches {
		a.flood.batches++
	}
	return false
}

// waitRows takes n rows from the rows-per-second budget, in pieces no
// larger than the limiter's burst.
func (a *Activities) waitRows(ctx context.Context, n int) error {
	l := a.flood.limiter
	if l == nil {
		return nil
	}
	for n > 0 {
		k := min(n, l.Burst())
		if err := l.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// floodPipe lets one poller gather its next group while the previous one
// is being settled: without it the poller waits on the database and the
// broker in turn, and a drain is bound by their latency, not their
// capacity. At most one group per poller is being settled at a time, so
// a poller holds at most two groups.
type floodPipe struct {
	slot chan struct{}
	wg   sync.WaitGroup
}

// settle runs fn in the background once the previous group is settled.
func (p *floodPipe) settle(fn func()) {
	if p.slot == nil {
		p.slot = make(chan struct{}, 1)
	}
	p.slot <- struct{}{}
	p.wg.Go(func() {
		defer func() { <-p.slot }()
		fn()
	})
}

// wait returns once the group being settled, if any, is settled: the poll
// activity does not end with a committed group unacked.
func (p *floodPipe) wait() { p.wg.Wait() }

// pollFlood gathers a group of batches and hands it to fl to settle while
// the next group is gathered. It returns how many messages it consumed.
func (a *Activities) pollFlood(ctx context.Context, log sdklog.Logger, fl *floodPipe) (int, error) {
	f := a.floodInit()
	msgs, dones, err := a.gatherFlood(ctx, f, log)
	defer func() { releaseBodies(dones) }() // all but a group handed to fl
	if err != nil {
		return 0, err
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	// The caller's ctx ends with this call; the settle gets the same
	// bound of its own. It is seen through even when the activity is
	// cancelled, as a consumed batch always is (Poll).
	held := dones
	dones = nil
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.Settings.PollWait+time.Minute)
	// Sorted and asked about running keys now, while the previous group
	// may still be settling: the visibility query is off the settle's
	// critical path.
	g := a.prepareFlood(sctx, msgs)
	fl.settle(func() {
		defer releaseBodies(held)
		defer cancel()
		a.settleFlood(sctx, f, log, g)
	})
	return len(msgs), nil
}

// gatherFlood consumes a group: a long poll for its first batch, then
// short polls topping it up until a batch comes back short, the group
// holds its batches or bytes, or the linger since its first batch is
// over. It returns the group's messages and the done funcs that give
// their bodies back; an error only when no batch came.
func (a *Activities) gatherFlood(ctx context.Context, f Flood, log sdklog.Logger) ([]mqclient.Message, []func(), error) {
	var msgs []mqclient.Message
	var dones []func()
	bytes := 0
	var lingerUntil time.Time
	for n := a.groupBatches(); n > 0; n-- {
		wait := a.Settings.PollWait
		if len(msgs) > 0 {
			// Later batches only top the group up: a short poll, which
			// the broker answers at once, empty when nothing is ready.
			// A long poll's shortest wait is a second, and at the end of
			// a backlog (the other poller holding the last messages) it
			// held a gathered group unacked that long for nothing: a
			// third of a 3 s drain on the benchmark.
			wait = 0
		}
		got, done, err := a.consume(ctx, wait)
		if err != nil {
			if len(msgs) == 0 {
				return nil, nil, err
			}
			log.Warn("consume failed while gathering a flood group; settling what was gathered", "error", err)
			break
		}
		dones = append(dones, done) // the group's bodies are held until it is settled
		if len(msgs) == 0 {
			lingerUntil = time.Now().Add(f.Linger)
		}
		msgs = append(msgs, got...)
		for _, m := range got {
			bytes += len(m.Body)
		}
		if len(got) < a.Settings.BatchSize || bytes >= f.Bytes || !time.Now().Before(lingerUntil) {
			break
		}
	}
	return msgs, dones, nil
}

// releaseBodies gives the bodies of consumed batches back to the worker's
// budget (the done funcs consume returned).
func releaseBodies(dones []func()) {
	for _, done := range dones {
		done()
	}
}

// settleFlood settles a group in bulk: clean messages, conflicts and bad
// input are all decided and stored in the group's transactions (conflicts
// and quarantines with a record notice each, store.InsertFlood), and every
// stored message is acked right after COMMIT. The record workflows that
// make conflicts and quarantines findable in the Web UI are started from
// the notices afterwards (Notices), so no exception holds the drain.
// Only what the bulk path cannot settle goes to its record workflow the
// default way: a key whose record workflow is running (nothing writes a
// key twice at once), a message Temporal would refuse (CheckHandover
// quarantines it), an exception whose key no notice can hold exactly, and
// any message whose bulk commit failed.
func (a *Activities) settleFlood(ctx context.Context, f Flood, log sdklog.Logger, g *floodGroup) {
	msgs, deflt, cands := g.msgs, g.deflt, g.cands
	noticeOK := a.Notices != nil
	r := <-g.running
	running, err := r.keys, r.err
	if err != nil {
		// Unknown which keys have a running record: let every message
		// take the default path this time rather than race one.
		log.Warn("could not list running records; handing the group over the default way", "error", err)
		a.Metrics.FloodMessages("workflow", len(msgs))
		a.handOverBatch(ctx, log, msgs)
		return
	}
	var bulk []floodItem
	for _, it := range cands {
		if it.m.Key != "" && running[it.m.Key] {
			deflt = append(deflt, it.m)
			continue
		}
		bulk = append(bulk, it)
	}
	if len(bulk) > 0 {
		if err := a.waitRows(ctx, len(bulk)); err != nil {
			for _, it := range bulk {
				deflt = append(deflt, it.m)
			}
			bulk = nil
		}
	}

	var handles []string
	if len(bulk) > 0 {
		var evs []syncevent.Event
		var evItems []floodItem
		var bad []store.QuarantineEntry
		var badItems []floodItem
		for _, it := range bulk {
			if it.bad != nil {
				bad = append(bad, *it.bad)
				badItems = append(badItems, it)
			} else {
				evs = append(evs, it.ev)
				evItems = append(evItems, it)
			}
		}
		var due time.Time
		if noticeOK {
			due = time.Now().Add(a.Notices.lease())
		}
		start := time.Now()
		res := a.Bulk.InsertFlood(ctx, evs, bad, due)
		took := time.Since(start)
		a.Metrics.CommitBatchSize.RecordValue(float64(len(bulk)))
		a.Metrics.CommitLatency.Record(took)
		for i, r := range res.Records {
			switch {
			case r.Err == nil && (r.Outcome == store.Inserted || r.Outcome == store.Duplicate || (r.Outcome == store.Conflict && noticeOK)):
				a.Metrics.Outcome(string(r.Outcome))
				handles = append(handles, evItems[i].m.ReceiptHandle)
			default:
				// Bad data the database refused, a conflict without a
				// notice or a failed commit: the key's record workflow
				// settles it durably.
				deflt = append(deflt, evItems[i].m)
			}
		}
		if res.Quarantine != nil {
			log.Warn("flood quarantine batch failed; handing its messages to their record workflows", "messages", len(bad), "error", res.Quarantine)
		}
		for i, it := range badItems {
			if res.Quarantine != nil {
				deflt = append(deflt, it.m)
				continue
			}
			a.Metrics.Quarantined(bad[i].Reason)
			handles = append(handles, it.m.ReceiptHandle)
		}
		if len(res.Notices) > 0 {
			a.Notices.Enqueue(res.Notices)
		}
		if a.adapt(f, took) {
			log.Warn("flood commit slow; shrinking groups", "took", took, "threshold", f.SlowCommit)
			sleep(ctx, nil, took)
		}
	}
	a.Metrics.FloodMessages("bulk", len(handles))
	a.Metrics.FloodMessages("workflow", len(deflt))

	var wg sync.WaitGroup
	if len(handles) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Committed: ack now. A failure here only means redeliveries,
			// which the unique keys absorb.
			if err := a.ackGroup(ctx, handles); err != nil {
				log.Warn("ack after flood commit failed; the messages will be redelivered and settled as duplicates", "handles", len(handles), "error", err)
			}
		}()
	}
	a.handOverBatch(ctx, log, deflt)
	wg.Wait()
}

// floodGroup is a gathered group sorted for settling: what goes the
// default way, what the bulk path takes unless its key runs, and the
// answer to which keys run.
type floodGroup struct {
	msgs    []mqclient.Message
	deflt   []mqclient.Message
	cands   []floodItem
	running chan runningAnswer
}

type runningAnswer struct {
	keys map[string]bool
	err  error
}

// prepareFlood parses a group and starts asking which of its keys have a
// running record workflow.
func (a *Activities) prepareFlood(ctx context.Context, msgs []mqclient.Message) *floodGroup {
	g := &floodGroup{msgs: msgs, running: make(chan runningAnswer, 1)}
	var (
		deflt    []mqclient.Message // the default path
		cands    []floodItem        // for the bulk path, unless their key runs
		limits   = a.Settings.ParseLimits()
		noticeOK = a.Notices != nil
	)
	for _, m := range msgs {
		if m.Key != "" {
			if _, _, ok := a.Settings.CheckHandover(m.Key, deliveryOf(m)); !ok {
				deflt = append(deflt, m)
				continue
			}
		}
		ev, err := limits.Parse(m.Key, m.MessageID, m.Body)
		if err == nil {
			cands = append(cands, floodItem{m: m, ev: ev})
			continue
		}
		// Bad input. A keyless message has no record workflow in either
		// mode (quarantined and acked; starter quarantine list finds
		// it); one with a key needs a notice that names it exactly.
		var inv *syncevent.InvalidError
		if !errors.As(err, &inv) || m.Key != "" && (!noticeOK || !store.NoticeKeyFits(m.Key, m.MessageID)) {
			deflt = append(deflt, m)
			continue
		}
		cands = append(cands, floodItem{m: m, bad: &store.QuarantineEntry{Key: m.Key, MessageID: m.MessageID, Tag: m.Tag,
			Reason: inv.Reason, Detail: inv.Error(), Body: m.Body, ConsumedTimes: m.ConsumedTimes}})
	}

	g.deflt, g.cands = deflt, cands
	go func() {
		keys, err := a.runningKeys(ctx, cands)
		g.running <- runningAnswer{keys, err}
	}()
	return g
}

// floodItem is a message of a group on the bulk path: a parsed event, or
// a quarantine entry.
type floodItem struct {
	m   mqclient.Message
	ev  syncevent.Event
	bad *store.QuarantineEntry
}

// ackGroup acks a committed group's handles in calls of up to 16, all at
// once. Not through the acker: the group is already batched, and the
// acker's wait to fill a call (SYNCBRIDGE_ACK_FLUSH) would hold the poller
// for a partly filled last call.
func (a *Activities) ackGroup(ctx context.Context, handles []string) error {
	const perCall = 16 // the broker's limit
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for start := 0; start < len(handles); start += perCall {
		chunk := handles[start:min(start+perCall, len(handles))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			refused, err := a.Consumer.Ack(ctx, chunk)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				a.Metrics.AckFailure("call_failed")
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			a.Metrics.AckedHandles.Inc(int64(len(chunk) - len(refused)))
			a.Metrics.ExpiredHandles.Inc(int64(len(refused)))
		}()
	}
	wg.Wait()
	return firstErr
}

// runningPage is how many running records runningKeys lists at once.
const runningPage = 100

// runningKeys returns which of the messages' keys have a running record
// workflow: those in a listing of running records asked for at most
// runningMaxAge ago and shared with the worker's other groups (running.go),
// and those whose record this worker started or signalled lately. Only
// when more records run than one page lists are the group's own keys
// asked about.
func (a *Activities) runningKeys(ctx context.Context, items []floodItem) (map[string]bool, error) {
	out := map[string]bool{}
	ids := make([]string, 0, len(items))
	keyOf := map[string]string{}
	for _, it := range items {
		m := it.m
		if m.Key == "" {
			continue
		}
		id := contract.RecordWorkflowID(a.Settings.WorkflowIDPrefix, m.Key)
		if _, dup := keyOf[id]; dup {
			continue
		}
		keyOf[id] = m.Key
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return out, nil
	}
	for _, id := range ids {
		if a.running.startedRecently(id) {
			out[keyOf[id]] = true
		}
	}
	l, err := a.running.listing(ctx, a.running.clock().Add(-runningMaxAge), a.listRunning)
	if err != nil {
		return nil, err
	}
	if l.complete {
		for _, id := range ids {
			if l.ids[id] {
				out[keyOf[id]] = true
			}
		}
		return out, nil
	}
	quoted := make([]string, len(ids))
	for i, id := range ids {
		quoted[i] = "'" + strings.ReplaceAll(id, "'", "\\'") + "'"
	}
	q := fmt.Sprintf("WorkflowId IN (%s) AND ExecutionStatus = 'Running'", strings.Join(quoted, ", "))
	var token []byte
	for {
		resp, err := a.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, PageSize: int32(len(ids)), NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list running records: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			if k, ok := keyOf[e.GetExecution().GetWorkflowId()]; ok {
				out[k] = true
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}

// listRunning lists the running records of the task queue, one page of
// them: in a flood few run (only exceptions the bulk path left to them),
// and one short page is cheaper for the visibility store than matching a
// group's few hundred IDs. complete is false when more than a page runs.
func (a *Activities) listRunning(ctx context.Context) (ids map[string]bool, complete bool, err error) {
	all := fmt.Sprintf("%s AND TaskQueue = '%s' AND ExecutionStatus = 'Running'", contract.RecordTypesQuery, a.Settings.TaskQueue)
	resp, err := a.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: all, PageSize: runningPage})
	if err != nil {
		return nil, false, fmt.Errorf("list running records: %w", err)
	}
	ids = make(map[string]bool, len(resp.GetExecutions()))
	for _, e := range resp.GetExecutions() {
		ids[e.GetExecution().GetWorkflowId()] = true
	}
	return ids, len(resp.GetNextPageToken()) == 0, nil
}
