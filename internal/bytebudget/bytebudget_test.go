package bytebudget

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/testwait"
)

func TestAcquireWaitsForRoom(t *testing.T) {
	b := New(100)
	if err := b.Acquire(context.Background(), 60); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Acquire(context.Background(), 50) }()
	select {
	case err := <-got:
		t.Fatalf("second acquire returned %v while 60 of 100 bytes were held", err)
	case <-time.After(50 * time.Millisecond):
	}
	b.Release(60)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("acquire not granted after release")
	}
	if h := b.Held(); h != 50 {
		t.Fatalf("held %d, want 50", h)
	}
}

func TestOversizedRequestRunsAlone(t *testing.T) {
	b := New(100)
	if err := b.Acquire(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	if b.TryAcquire(500) {
		t.Fatal("oversized request admitted next to another")
	}
	b.Release(10)
	// Alone, it must not block forever: the message still has to be
	// processed (and quarantined).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Acquire(ctx, 500); err != nil {
		t.Fatalf("oversized request alone: %v", err)
	}
	if b.TryAcquire(1) {
		t.Fatal("request admitted while an oversized one holds more than the budget")
	}
	b.Release(500)
}

func TestCancelledAcquireHoldsNothing(t *testing.T) {
	b := New(100)
	if err := b.Acquire(context.Background(), 100); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := b.Acquire(ctx, 80); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire = %v, want deadline exceeded", err)
	}
	b.Release(100)
	if h := b.Held(); h != 0 {
		t.Fatalf("held %d after a cancelled acquire, want 0", h)
	}
	if !b.TryAcquire(100) {
		t.Fatal("budget not fully available after a cancelled acquire")
	}
}

// A large request at the head of the queue is not starved by a stream of
// small ones that would each fit.
func TestFIFO(t *testing.T) {
	b := New(100)
	if err := b.Acquire(context.Background(), 50); err != nil {
		t.Fatal(err)
	}
	big := make(chan error, 1)
	go func() { big <- b.Acquire(context.Background(), 100) }()
	testwait.Until(t, 5*time.Second, "the large request to wait", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 1 })
	if b.TryAcquire(10) {
		t.Fatal("small request overtook a waiting large one")
	}
	b.Release(50)
	if err := <-big; err != nil {
		t.Fatal(err)
	}
	b.Release(100)
}

// Many goroutines never hold more than the budget together.
func TestNeverOverBudget(t *testing.T) {
	b := New(1000)
	var cur, peak atomic.Int64
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				n := int64(1 + (i*37+j*11)%300)
				if err := b.Acquire(context.Background(), n); err != nil {
					t.Error(err)
					return
				}
				v := cur.Add(n)
				for p := peak.Load(); v > p && !peak.CompareAndSwap(p, v); p = peak.Load() {
				}
				time.Sleep(time.Microsecond)
				cur.Add(-n)
				b.Release(n)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 1000 {
		t.Fatalf("peak %d bytes held, budget 1000", p)
	}
	if h := b.Held(); h != 0 {
		t.Fatalf("held %d at the end", h)
	}
}

func TestReleaseMoreThanHeldPanics(t *testing.T) {
	b := New(10)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	b.Release(1)
}
