package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

var errBad = errors.New("bad data")

// fakeInserter answers each event with an outcome naming its message ID
// (so a mixed-up reply is visible), fails keys starting with "bad", and
// records every call. Calls wait for delay, or for gate when it is set.
type fakeInserter struct {
	delay time.Duration
	gate  chan struct{}
	pool  int // MaxOpenConns; 0: does not say

	mu      sync.Mutex
	batches [][]syncevent.Event
	running int
	maxRun  int
}

func (f *fakeInserter) InsertBatch(ctx context.Context, evs []syncevent.Event) []store.BatchResult {
	f.mu.Lock()
	f.batches = append(f.batches, slices.Clone(evs))
	f.running++
	f.maxRun = max(f.maxRun, f.running)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
	}()
	if f.gate != nil {
		<-f.gate
	}
	time.Sleep(f.delay)
	res := make([]store.BatchResult, len(evs))
	for i, ev := range evs {
		if strings.HasPrefix(ev.Key, "bad") {
			res[i].Err = errBad
			continue
		}
		res[i].Outcome = store.Outcome("out-" + ev.MessageID)
	}
	return res
}

func (f *fakeInserter) calls() [][]syncevent.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.batches)
}

// pooled is a fakeInserter that reports a connection cap.
type pooled struct{ *fakeInserter }

func (p pooled) MaxOpenConns() int { return p.pool }

func ev(key, msg string) syncevent.Event {
	return syncevent.Event{Key: key, MessageID: msg, PatientID: "P", Hash: "h"}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Many concurrent callers share few calls, each gets its own answer, no
// more calls run at once than Concurrency, no batch exceeds MaxBatch or
// holds a key twice, and a bad event fails alone.
func TestCoalesces(t *testing.T) {
	t.Parallel()
	f := &fakeInserter{delay: 20 * time.Millisecond}
	var (
		obMu      sync.Mutex
		observed  int
		withError int
	)
	c := New(f, Options{Concurrency: 2, MaxBatch: 8, OnBatch: func(size int, took time.Duration, err error) {
		obMu.Lock()
		defer obMu.Unlock()
		observed += size
		if err != nil {
			withError++
		}
	}})
	defer c.Close()
	ctx := testCtx(t)
	const callers = 100
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() {
			key := fmt.Sprintf("k%d", i%40) // overlapping keys
			if i%25 == 7 {
				key = fmt.Sprintf("bad%d", i)
			}
			msg := fmt.Sprintf("m%d", i)
			out, err := c.Insert(ctx, ev(key, msg))
			switch {
			case strings.HasPrefix(key, "bad"):
				if !errors.Is(err, errBad) {
					errs <- fmt.Errorf("%s: %v, %v; want its bad-data error", key, out, err)
				}
			case err != nil || out != store.Outcome("out-"+msg):
				errs <- fmt.Errorf("%s: %v, %v; want out-%s", msg, out, err, msg)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	calls := f.calls()
	total, badBatches := 0, 0
	for _, b := range calls {
		total += len(b)
		for _, e := range b {
			if strings.HasPrefix(e.Key, "bad") {
				badBatches++ // the fake fails a batch holding a bad key
				break
			}
		}
		if len(b) > 8 {
			t.Errorf("batch of %d, MaxBatch 8", len(b))
		}
		seen := map[string]bool{}
		for _, e := range b {
			if seen[e.Key] {
				t.Errorf("key %s twice in one batch", e.Key)
			}
			seen[e.Key] = true
		}
	}
	t.Logf("%d callers in %d calls, at most %d at once", callers, len(calls), f.maxRun)
	if total != callers || len(calls) >= callers/2 {
		t.Errorf("%d events in %d calls; want %d events in far fewer calls", total, len(calls), callers)
	}
	if f.maxRun > 2 {
		t.Errorf("%d calls at once, Concurrency 2", f.maxRun)
	}
	obMu.Lock()
	defer obMu.Unlock()
	// Two of the four bad keys may share a batch.
	if observed != callers || withError != badBatches || badBatches == 0 {
		t.Errorf("OnBatch saw %d events, %d batches with an error; want %d and %d", observed, withError, callers, badBatches)
	}
}

// A lone request goes out at once, without waiting for company; with
// Linger, requests close together share a call although slots are free.
func TestLinger(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	run := func(linger time.Duration) int {
		f := &fakeInserter{}
		c := New(f, Options{Linger: linger})
		defer c.Close()
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				time.Sleep(time.Duration(i) * 20 * time.Millisecond)
				if _, err := c.Insert(ctx, ev(fmt.Sprintf("k%d", i), "m")); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		return len(f.calls())
	}
	if n := run(0); n != 2 {
		t.Errorf("without Linger: %d calls for two requests 20ms apart, want 2", n)
	}
	if n := run(time.Second); n != 1 {
		t.Errorf("with Linger 1s: %d calls for two requests 20ms apart, want 1", n)
	}

	// Without Linger nothing waits: a lone request is answered long
	// before any batch could fill.
	f := &fakeInserter{}
	c := New(f, Options{MaxBatch: 1000})
	defer c.Close()
	start := time.Now()
	if _, err := c.Insert(ctx, ev("alone", "m")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("lone insert took %v", d)
	}
}

// take keeps queue order, one request per key, MaxBatch at most, and
// drops requests whose callers left.
func TestTake(t *testing.T) {
	t.Parallel()
	c := &Committer{opts: Options{MaxBatch: 3}}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	mk := func(ctx context.Context, key, msg string) *request {
		return &request{ctx: ctx, ev: ev(key, msg)}
	}
	queue := []*request{
		mk(live, "a", "1"), mk(live, "a", "2"), mk(gone, "b", "3"), mk(live, "c", "4"),
		mk(live, "d", "5"), mk(live, "e", "6"), mk(live, "a", "7"),
	}
	msgs := func(rs []*request) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ev.MessageID)
		}
		return out
	}
	batch, rest := c.take(queue)
	if got := msgs(batch); !slices.Equal(got, []string{"1", "4", "5"}) {
		t.Errorf("first batch %v", got)
	}
	if got := msgs(rest); !slices.Equal(got, []string{"2", "6", "7"}) {
		t.Errorf("rest %v", got)
	}
	batch, rest = c.take(rest)
	if got := msgs(batch); !slices.Equal(got, []string{"2", "6"}) || !slices.Equal(msgs(rest), []string{"7"}) {
		t.Errorf("second batch %v, rest %v", got, msgs(rest))
	}
}

// A caller whose ctx ends gets ctx.Err() at once, while its batch goes on
// for the others; a caller that leaves while still queued is not sent.
func TestCallerCancel(t *testing.T) {
	t.Parallel()
	f := &fakeInserter{gate: make(chan struct{})}
	c := New(f, Options{Concurrency: 1})
	defer c.Close()
	ctx := testCtx(t)

	inFlight, cancelInFlight := context.WithCancel(ctx)
	queued, cancelQueued := context.WithCancel(ctx)
	results := make(chan error, 3)
	go func() { _, err := c.Insert(inFlight, ev("a", "1")); results <- err }()
	waitCalls(t, f, 1) // "a" holds the only slot
	go func() { _, err := c.Insert(queued, ev("b", "2")); results <- err }()
	go func() {
		out, err := c.Insert(ctx, ev("c", "3"))
		if err == nil && out != "out-3" {
			err = fmt.Errorf("c: outcome %s", out)
		}
		results <- err
	}()
	time.Sleep(50 * time.Millisecond) // let b and c queue
	cancelInFlight()
	cancelQueued()
	for range 2 {
		if err := <-results; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled caller got %v", err)
		}
	}
	close(f.gate)
	if err := <-results; err != nil {
		t.Fatalf("remaining caller: %v", err)
	}
	calls := f.calls()
	if len(calls) != 2 || len(calls[1]) != 1 || calls[1][0].Key != "c" {
		t.Errorf("calls %v; want [a] then [c] (b left while queued)", calls)
	}
}

// waitCalls waits until f has been called n times.
func waitCalls(t *testing.T, f *fakeInserter, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if len(f.calls()) >= n {
			return
		}
	}
	t.Fatalf("inserter not called %d times", n)
}

// Close sends what is queued, waits for it, and refuses what comes after.
func TestCloseFlushes(t *testing.T) {
	t.Parallel()
	f := &fakeInserter{gate: make(chan struct{})}
	c := New(f, Options{Concurrency: 1})
	ctx := testCtx(t)
	const callers = 10
	results := make(chan error, callers)
	for i := range callers {
		go func() {
			_, err := c.Insert(ctx, ev(fmt.Sprintf("k%d", i), "m"))
			results <- err
		}()
	}
	waitCalls(t, f, 1)
	time.Sleep(50 * time.Millisecond) // let the others queue
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a batch was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(f.gate)
	<-closed
	for range callers {
		if err := <-results; err != nil {
			t.Errorf("queued caller after Close: %v", err)
		}
	}
	n := 0
	for _, b := range f.calls() {
		n += len(b)
	}
	if n != callers {
		t.Errorf("%d events sent, want %d", n, callers)
	}
	if _, err := c.Insert(ctx, ev("late", "m")); !errors.Is(err, ErrClosed) {
		t.Errorf("Insert after Close: %v, want ErrClosed", err)
	}
}

// Concurrency never exceeds the inserter's connection pool.
func TestConcurrencyCappedByPool(t *testing.T) {
	t.Parallel()
	f := &fakeInserter{delay: 10 * time.Millisecond, pool: 2}
	c := New(pooled{f}, Options{Concurrency: 8, MaxBatch: 1})
	defer c.Close()
	if c.Concurrency() != 2 {
		t.Errorf("Concurrency() = %d, want the pool's 2", c.Concurrency())
	}
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := c.Insert(ctx, ev(fmt.Sprintf("k%d", i), "m")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if f.maxRun != 2 {
		t.Errorf("%d calls at once, want 2 (the pool)", f.maxRun)
	}
	if d := New(&fakeInserter{}, Options{}); d.Concurrency() != DefaultConcurrency {
		t.Errorf("default Concurrency %d", d.Concurrency())
	} else {
		d.Close()
	}
}

func TestNewPanicsOnNil(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("New(nil) did not panic")
		}
	}()
	New(nil, Options{})
}
