package acker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/mqclient"
)

// fakeConsumer records Ack calls; handles starting with "x" are refused.
type fakeConsumer struct {
	mu    sync.Mutex
	calls [][]string
	fail  error
}

func (f *fakeConsumer) Consume(context.Context, int, time.Duration) ([]mqclient.Message, error) {
	return nil, nil
}

func (f *fakeConsumer) Ack(_ context.Context, hs []string) ([]mqclient.HandleError, error) {
	f.mu.Lock()
	f.calls = append(f.calls, append([]string(nil), hs...))
	f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	var refused []mqclient.HandleError
	for _, h := range hs {
		if h[0] == 'x' {
			refused = append(refused, mqclient.HandleError{Handle: h, Code: "ReceiptHandleError"})
		}
	}
	return refused, nil
}

func TestCoalescesConcurrentAcks(t *testing.T) {
	f := &fakeConsumer{}
	a := New(f, Options{FlushInterval: 200 * time.Millisecond})
	defer a.Close()
	const n = 64
	var wg sync.WaitGroup
	results := make([]Result, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			h := fmt.Sprintf("h%d", i)
			if i%8 == 0 {
				h = fmt.Sprintf("x%d", i)
			}
			r, err := a.Ack(context.Background(), []string{h})
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		}(i)
	}
	wg.Wait()
	total := 0
	for _, c := range f.calls {
		if len(c) > MaxBatch {
			t.Fatalf("call with %d handles exceeds the broker limit", len(c))
		}
		total += len(c)
	}
	if total != n {
		t.Fatalf("acked %d handles in total, want %d", total, n)
	}
	// 64 concurrent callers within one flush window fit in 4 full calls;
	// allow slack for goroutines arriving after a flush.
	if len(f.calls) > 8 {
		t.Fatalf("%d calls for %d handles: not coalesced", len(f.calls), n)
	}
	for i, r := range results {
		wantRefused := i%8 == 0
		if wantRefused != (len(r.Refused) == 1) || wantRefused == (r.Acked == 1) {
			t.Fatalf("caller %d got %+v", i, r)
		}
	}
}

func TestLargeRequestIsSplit(t *testing.T) {
	f := &fakeConsumer{}
	a := New(f, Options{FlushInterval: time.Millisecond})
	defer a.Close()
	hs := make([]string, 40)
	for i := range hs {
		hs[i] = fmt.Sprintf("h%d", i)
	}
	r, err := a.Ack(context.Background(), hs)
	if err != nil || r.Acked != 40 {
		t.Fatalf("got %+v, %v", r, err)
	}
	for _, c := range f.calls {
		if len(c) > MaxBatch {
			t.Fatalf("call of %d", len(c))
		}
	}
}

func TestCallErrorReachesEveryCaller(t *testing.T) {
	f := &fakeConsumer{fail: errors.New("503 from broker")}
	a := New(f, Options{FlushInterval: 50 * time.Millisecond})
	defer a.Close()
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := a.Ack(context.Background(), []string{fmt.Sprint(i)}); err == nil {
				t.Error("a failed call was reported as success")
			}
		}(i)
	}
	wg.Wait()
}

func TestCloseFlushesPending(t *testing.T) {
	f := &fakeConsumer{}
	a := New(f, Options{FlushInterval: time.Hour})
	done := make(chan Result, 1)
	go func() {
		r, err := a.Ack(context.Background(), []string{"h"})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	// Give the request time to join the (hour-long) batch, then close:
	// Close must send it rather than drop it.
	time.Sleep(200 * time.Millisecond)
	a.Close()
	select {
	case r := <-done:
		if r.Acked != 1 || len(f.calls) != 1 {
			t.Fatalf("pending handle not flushed on Close: %+v, calls %v", r, f.calls)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Ack did not return after Close")
	}
}
