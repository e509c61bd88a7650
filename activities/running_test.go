package activities

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/testwait"
)

// fakeClock is a settable clock for runningRecords.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestRunningListingsAreShared(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	r := &runningRecords{now: clk.now}
	var calls atomic.Int32
	release := make(chan struct{})
	list := func(context.Context) (map[string]bool, bool, error) {
		calls.Add(1)
		<-release
		return map[string]bool{"a": true}, true, nil
	}
	ctx := context.Background()
	fresh := clk.now().Add(-runningMaxAge)

	// Groups asking at once share the listing in flight.
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			l, err := r.listing(ctx, fresh, list)
			if err != nil || !l.ids["a"] {
				t.Errorf("listing: %v %+v", err, l)
			}
		})
	}
	testwait.Until(t, 5*time.Second, "the first listing to be asked for", func() bool { return calls.Load() == 1 })
	time.Sleep(20 * time.Millisecond) // let the others queue behind it
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("5 groups at once asked %d times, want 1", n)
	}

	// Within runningMaxAge the listing is reused...
	clk.advance(runningMaxAge / 2)
	if _, err := r.listing(ctx, clk.now().Add(-runningMaxAge), list); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("a listing %s old was asked for again (%d calls)", runningMaxAge/2, n)
	}
	// ...and not after.
	clk.advance(runningMaxAge)
	if _, err := r.listing(ctx, clk.now().Add(-runningMaxAge), list); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("a listing %s old was reused (%d calls, want 2)", runningMaxAge*3/2, n)
	}
}

// A group gathered after the listing in flight was asked for does not
// take that listing: it waits for it and asks again.
func TestRunningListingInFlightTooOldIsAskedAgain(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	r := &runningRecords{now: clk.now}
	var calls atomic.Int32
	first := make(chan struct{})
	list := func(context.Context) (map[string]bool, bool, error) {
		if calls.Add(1) == 1 {
			<-first
			return map[string]bool{}, true, nil
		}
		return map[string]bool{"late": true}, true, nil
	}
	ctx := context.Background()
	go func() { _, _ = r.listing(ctx, clk.now(), list) }()
	testwait.Until(t, 5*time.Second, "the first listing to be asked for", func() bool { return calls.Load() == 1 })
	clk.advance(time.Millisecond)
	got := make(chan *runningListing, 1)
	go func() {
		l, err := r.listing(ctx, clk.now(), list)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	time.Sleep(20 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Fatalf("asked while a listing was in flight: %d calls", n)
	}
	close(first)
	l := <-got
	if !l.ids["late"] || calls.Load() != 2 {
		t.Fatalf("the later group took the older listing: %+v after %d calls", l.ids, calls.Load())
	}
}

func TestRunningListingErrorsAreNotKept(t *testing.T) {
	r := &runningRecords{}
	fail := errors.New("visibility unavailable")
	var calls int
	list := func(context.Context) (map[string]bool, bool, error) {
		calls++
		if calls == 1 {
			return nil, false, fail
		}
		return map[string]bool{}, true, nil
	}
	fresh := time.Now().Add(-runningMaxAge)
	if _, err := r.listing(context.Background(), fresh, list); !errors.Is(err, fail) {
		t.Fatalf("first listing: %v, want %v", err, fail)
	}
	if _, err := r.listing(context.Background(), fresh, list); err != nil || calls != 2 {
		t.Fatalf("after a failed listing: err %v after %d calls, want a new listing", err, calls)
	}
}

func TestRecordsStartedHereCountAsRunning(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	r := &runningRecords{now: clk.now}
	r.noteStarted("k1")
	clk.advance(runningLocalMemory - time.Millisecond)
	if !r.startedRecently("k1") {
		t.Fatal("a record started just under runningLocalMemory ago is not counted as running")
	}
	clk.advance(time.Millisecond)
	r.noteStarted("k2") // prunes k1
	if r.startedRecently("k1") {
		t.Fatal("a record started runningLocalMemory ago still counts as running")
	}
	if _, ok := r.started["k1"]; ok {
		t.Fatal("k1 was not pruned")
	}
	if !r.startedRecently("k2") {
		t.Fatal("k2 just started")
	}
}
