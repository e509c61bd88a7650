package activities

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uber-go/tally/v4"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/syncbridge/syncbridge/internal/metrics"
	"github.com/syncbridge/syncbridge/internal/searchattr"
	"github.com/syncbridge/syncbridge/internal/store"
)

// collected runs collect with the given linger and SyncKeys size (0: the
// default) and returns its runs channel; collect stops with the test.
func collected(t *testing.T, linger time.Duration, keysBytes int) (*Notices, <-chan []store.Notice) {
	t.Helper()
	n := &Notices{Linger: linger, KeysBytes: keysBytes}
	n.init()
	ctx, cancel := context.WithCancel(context.Background())
	runs := make(chan []store.Notice)
	done := make(chan struct{})
	go func() { defer close(done); n.collect(ctx, runs) }()
	t.Cleanup(func() { cancel(); <-done })
	return n, runs
}

func nextRun(t *testing.T, runs <-chan []store.Notice, within time.Duration) []store.Notice {
	t.Helper()
	select {
	case r := <-runs:
		return r
	case <-time.After(within):
		t.Fatalf("no run handed over within %s", within)
		return nil
	}
}

// Exceptions of flood groups that arrive within the linger share a run,
// instead of each group's few making runs of their own.
func TestNoticesRunsSpanFloodGroups(t *testing.T) {
	n, runs := collected(t, time.Second, 0)
	start := time.Now()
	for i := range 5 { // five groups 100 ms apart, 3 conflicts and 1 quarantine each
		for j := range 3 {
			n.queue <- store.Notice{Key: fmt.Sprintf("c%d-%d", i, j), Outcome: "conflict"}
		}
		n.queue <- store.Notice{Key: fmt.Sprintf("q%d", i), Outcome: "quarantined"}
		time.Sleep(100 * time.Millisecond)
	}
	got := map[string]int{}
	for range 2 {
		r := nextRun(t, runs, 5*time.Second)
		for _, x := range r {
			if x.Outcome != r[0].Outcome {
				t.Fatalf("a run mixes outcomes %q and %q", r[0].Outcome, x.Outcome)
			}
		}
		got[r[0].Outcome] = len(r)
	}
	if got["conflict"] != 15 || got["quarantined"] != 5 {
		t.Errorf("runs %v, want one of 15 conflicts and one of 5 quarantines", got)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("runs handed over after %s, before the 1s linger", took)
	}
	select {
	case r := <-runs:
		t.Errorf("an extra run of %d notices", len(r))
	case <-time.After(200 * time.Millisecond):
	}
}

// A full run goes at once; the linger only waits for notices that could
// still share one.
func TestNoticesFullRunGoesAtOnce(t *testing.T) {
	n, runs := collected(t, time.Minute, 0)
	for i := range maxNoticeRecords + 3 {
		n.queue <- store.Notice{Key: fmt.Sprintf("k%d", i), Outcome: "conflict"}
	}
	if r := nextRun(t, runs, 5*time.Second); len(r) != maxNoticeRecords {
		t.Errorf("first run lists %d records, want %d", len(r), maxNoticeRecords)
	}
	select {
	case r := <-runs:
		t.Errorf("the 3 left over were handed over at once (%d), want them held for the linger", len(r))
	case <-time.After(300 * time.Millisecond):
	}
}

// SyncKeys is one search attribute value: a run's keys, encoded as the SDK
// encodes them, stay within the size runs are filled to (here Temporal's
// default per-value limit), with long keys and keys JSON escapes.
func TestNoticesRunKeysFitOneValue(t *testing.T) {
	n, runs := collected(t, 300*time.Millisecond, noticeKeysFloor)
	var keys []string
	for i := range 40 {
		keys = append(keys, fmt.Sprintf("%s%02d", strings.Repeat("k", 60), i)) // 62 bytes
		keys = append(keys, fmt.Sprintf("<clinic&%02d>/\"ü\"", i))             // escaped by encoding/json
	}
	for _, k := range keys {
		n.queue <- store.Notice{Key: k, Outcome: "quarantined"}
	}
	total, full := 0, 0
	for total < len(keys) {
		r := nextRun(t, runs, 5*time.Second)
		var ks []string
		for _, x := range r {
			ks = append(ks, x.Key)
		}
		p, err := converter.GetDefaultDataConverter().ToPayload(ks)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.GetData()) > noticeKeysFloor {
			t.Errorf("a run's SyncKeys value takes %d bytes, over the %d limit", len(p.GetData()), noticeKeysFloor)
		}
		if len(p.GetData()) > noticeKeysFloor-80 {
			full++
		}
		total += len(r)
	}
	if total != len(keys) {
		t.Errorf("%d notices handed over, want %d", total, len(keys))
	}
	if full == 0 {
		t.Error("no run came within a key of the limit: the runs are smaller than the limit allows")
	}
}

// A lone notice is started once the linger passes, not held for company.
func TestNoticesLoneNoticeWaitsOnlyTheLinger(t *testing.T) {
	n, runs := collected(t, 150*time.Millisecond, 0)
	start := time.Now()
	n.queue <- store.Notice{Key: "k", Outcome: "conflict"}
	r := nextRun(t, runs, 5*time.Second)
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("handed over after %s, before the linger", took)
	}
	if len(r) != 1 {
		t.Errorf("run of %d, want 1", len(r))
	}
}

// An outbox batch leaves the outbox only once every notice of it this
// worker holds is in a started run, under the claim it was held by; a
// notice dropped or not started keeps its batch for a sweep. Notices of
// record_notices rows (no batch) leave one by one.
func TestNoticesDeleteABatchOnceAllItsNoticesStarted(t *testing.T) {
	n := &Notices{}
	n.init()
	a := []store.Notice{{Key: "a1", Batch: "A"}, {Key: "a2", Batch: "A"}, {Key: "a3", Batch: "A"}}
	swept := []store.Notice{{Key: "a1", Batch: "A", Claim: "c1"}}
	legacy := []store.Notice{{Key: "old", Outcome: "conflict"}}
	n.hold(a)
	n.hold(swept)
	n.hold(legacy)
	if gone := n.release(a[:2], true); len(gone) != 0 {
		t.Fatalf("batch A deleted with a3 not started: %+v", gone)
	}
	if gone := n.release(swept, true); len(gone) != 1 || gone[0].Claim != "c1" {
		t.Fatalf("the swept copy: %+v, want batch A under claim c1 deleted", gone)
	}
	if gone := n.release(a[2:], true); len(gone) != 1 || gone[0].Batch != "A" || gone[0].Claim != "" {
		t.Fatalf("last of A started: %+v, want batch A (no claim) deleted", gone)
	}
	if gone := n.release(legacy, true); len(gone) != 1 || gone[0].Key != "old" {
		t.Fatalf("a record_notices notice: %+v, want it deleted", gone)
	}

	b := []store.Notice{{Key: "b1", Batch: "B"}, {Key: "b2", Batch: "B"}}
	n.hold(b)
	if gone := n.release(b[:1], false); len(gone) != 0 {
		t.Fatalf("a failed start deleted %+v", gone)
	}
	if gone := n.release(b[1:], true); len(gone) != 0 {
		t.Fatalf("batch B deleted though b1 never started: %+v", gone)
	}
	if len(n.held) != 0 {
		t.Errorf("counts left behind: %v", n.held)
	}
}

// Enqueue counts a call's notices before queueing any, and a notice that
// does not fit the queue keeps its batch in the outbox.
func TestNoticesEnqueueOverflowKeepsTheBatch(t *testing.T) {
	n := &Notices{Metrics: metrics.NewPipeline(tally.NoopScope)}
	n.init()
	for range queueCap - 1 {
		n.queue <- store.Notice{Key: "filler"}
	}
	n.Enqueue([]store.Notice{{Key: "x1", Batch: "X"}, {Key: "x2", Batch: "X"}})
	x1 := <-n.queue // the fillers first
	for x1.Key == "filler" {
		x1 = <-n.queue
	}
	if gone := n.release([]store.Notice{x1}, true); len(gone) != 0 {
		t.Fatalf("batch X deleted though x2 did not fit the queue: %+v", gone)
	}
	if len(n.held) != 0 {
		t.Errorf("counts left behind: %v", n.held)
	}
}

// refusingClient starts runs whose SyncKeys value fits limit and refuses
// the others as Temporal does, as invalid.
type refusingClient struct {
	client.Client
	limit   int
	mu      sync.Mutex
	started [][]string // the keys of each run started
	refused int
}

func (c *refusingClient) ExecuteWorkflow(_ context.Context, o client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
	keys, _ := o.TypedSearchAttributes.GetKeywordList(searchattr.Keys)
	p, err := converter.GetDefaultDataConverter().ToPayload(keys)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p.GetData()) > c.limit {
		c.refused++
		return nil, serviceerror.NewInvalidArgumentf("search attribute SyncKeys value size %d exceeds size limit %d", len(p.GetData()), c.limit)
	}
	c.started = append(c.started, keys)
	return nil, nil
}

// A server that refuses the size runs are filled to (Temporal Cloud's
// 2 KiB limit, say) costs a refusal per halving, and the run is started in
// parts that fit: every record is listed, none twice.
func TestNoticesShrinkToWhatTheServerTakes(t *testing.T) {
	tc := &refusingClient{limit: 3000}
	n := &Notices{Temporal: tc, KeysBytes: 16 << 10, Metrics: metrics.NewPipeline(tally.NoopScope), Log: slog.New(slog.DiscardHandler)}
	n.init()
	var run []store.Notice
	for i := range 300 {
		run = append(run, store.Notice{Key: fmt.Sprintf("clinic-07-rec-%06d", i), MessageID: fmt.Sprintf("m%d", i), Outcome: "conflict"})
	}
	if !n.start(context.Background(), run) {
		t.Fatal("start reported the run not started")
	}
	if got := n.keysBytes(); got != 2048 {
		t.Errorf("runs now filled to %d bytes, want 2048 (16 KiB halved until under the server's 3000)", got)
	}
	if tc.refused != 3 {
		t.Errorf("%d refusals, want 3 (16, 8 and 4 KiB)", tc.refused)
	}
	seen := map[string]bool{}
	for _, keys := range tc.started {
		for _, k := range keys {
			if seen[k] {
				t.Fatalf("%s listed twice", k)
			}
			seen[k] = true
		}
	}
	if len(seen) != len(run) {
		t.Errorf("%d of %d records listed", len(seen), len(run))
	}

	// At the floor a refusal is a failure: the rows wait for a sweep.
	tc.limit = 100
	if n.start(context.Background(), run[:100]) {
		t.Error("a run the server refuses at the floor reported started")
	}
}
