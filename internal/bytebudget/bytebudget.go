// Package bytebudget caps the bytes of message bodies a worker holds at
// once. A batch of 16 bodies of 1 MiB, times several pollers, plus the
// parse of each, is what pushed workers past their memory limit; with a
// budget, a poller waits for room instead of fetching or handing over more.
//
// It is a weighted semaphore in bytes with one twist: a single request
// larger than the whole budget is admitted when nothing else is held, so an
// oversized message is still processed (and quarantined) rather than
// blocking forever.
package bytebudget

import (
	"context"
	"fmt"
	"sync"
)

// Budget is safe for concurrent use. The zero value is not usable: New.
type Budget struct {
	mu      sync.Mutex
	limit   int64
	held    int64
	waiters []*waiter // FIFO: a large request is not starved by small ones
}

type waiter struct {
	n     int64
	ready chan struct{}
}

// New returns a budget of limit bytes. limit must be positive.
func New(limit int64) *Budget {
	if limit <= 0 {
		panic(fmt.Sprintf("bytebudget: limit %d, want > 0", limit))
	}
	return &Budget{limit: limit}
}

// Limit is the budget's size in bytes.
func (b *Budget) Limit() int64 { return b.limit }

// Held is the number of bytes currently acquired.
func (b *Budget) Held() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held
}

// fits reports whether n more bytes may be held now.
func (b *Budget) fits(n int64) bool {
	return b.held+n <= b.limit || b.held == 0
}

// Acquire waits until n bytes fit, then holds them; Release gives them
// back. It returns ctx's error, holding nothing, if ctx ends first. n <= 0
// holds nothing.
func (b *Budget) Acquire(ctx context.Context, n int64) error {
	if n <= 0 {
		return nil
	}
	b.mu.Lock()
	if len(b.waiters) == 0 && b.fits(n) {
		b.held += n
		b.mu.Unlock()
		return nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-w.ready:
			// Granted while giving up: hand the bytes back.
			b.held -= n
			b.grant()
		default:
			for i, x := range b.waiters {
				if x == w {
					b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
					break
				}
			}
			// The head may have been blocking smaller requests behind it.
			b.grant()
		}
		return ctx.Err()
	}
}

// TryAcquire holds n bytes if they fit now, without waiting.
func (b *Budget) TryAcquire(n int64) bool {
	if n <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.waiters) == 0 && b.fits(n) {
		b.held += n
		return true
	}
	return false
}

// Release gives back n bytes acquired earlier.
func (b *Budget) Release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.held {
		panic(fmt.Sprintf("bytebudget: release of %d bytes, only %d held", n, b.held))
	}
	b.held -= n
	b.grant()
}

// grant admits waiters in order while they fit. Called with mu held.
func (b *Budget) grant() {
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		if !b.fits(w.n) {
			return
		}
		b.held += w.n
		b.waiters = b.waiters[1:]
		close(w.ready)
	}
}
