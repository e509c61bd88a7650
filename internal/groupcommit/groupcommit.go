// Package groupcommit coalesces the record inserts of many concurrent
// activities in one worker process into shared database transactions.
// During a backlog drain hundreds of record workflows insert within
// milliseconds of each other; a transaction per message costs three to five
// statements, four to eight round trips and a log flush at every COMMIT, so
// the database caps the drain long before the broker does. Sharing one
// transaction among up to 64 messages (store.InsertBatch) brings that down
// to a fraction of a statement and of a round trip per message.
//
// A request goes out at once when a commit slot is free, so a lone message
// waits for nothing. Only while every slot is busy do requests queue, and
// the queue leaves as one batch when the next slot frees: the busier the
// database, the larger the batches.
package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// BatchInserter stores events in shared transactions; *store.Store is one.
// It returns one result per event, in order, and a result without error
// must be committed.
type BatchInserter interface {
	InsertBatch(ctx context.Context, evs []syncevent.Event) []store.BatchResult
}

// poolSizer is implemented by inserters that know their connection cap
// (*store.Store does).
type poolSizer interface {
	MaxOpenConns() int
}

// Options tune a Committer.
type Options struct {
	// Concurrency is how many InsertBatch calls may run at once. Each
	// holds a pooled connection for its transaction, so it must not exceed
	// the pool cap (POLARDB_MAX_CONNS): New lowers it to the inserter's
	// MaxOpenConns when that is smaller. Zero means 4.
	Concurrency int
	// MaxBatch is the most events in one InsertBatch call. Zero means 64.
	MaxBatch int
	// Linger is how long a request may wait, although a slot is free, for
	// others to share its batch. Zero means no wait: batches form only
	// while all slots are busy, which a flood makes them anyway.
	Linger time.Duration
	// Timeout bounds one InsertBatch call, independent of the callers'
	// contexts (one caller giving up must not cancel the others' batch).
	// Zero means 30s.
	Timeout time.Duration
	// OnBatch, if set, observes every InsertBatch call (for metrics): its
	// size, duration, and the first per-event error (nil when all
	// succeeded).
	OnBatch func(size int, took time.Duration, err error)
}

// Defaults for zero Options fields.
const (
	DefaultConcurrency = 4
	DefaultMaxBatch    = 64
	DefaultTimeout     = 30 * time.Second
)

// ErrClosed is returned by Insert after Close.
var ErrClosed = errors.New("groupcommit: committer closed")

// Committer batches inserts. Create with New; Close to stop.
type Committer struct {
	ins      BatchInserter
	opts     Options
	reqs     chan *request
	finished chan struct{}
	stop     chan struct{}
	closing  sync.Once
	done     sync.WaitGroup
}

type request struct {
	ctx     context.Context
	ev      syncevent.Event
	arrived time.Time
	reply   chan store.BatchResult // buffered: a caller that left never blocks a batch
}

// New starts a Committer over ins. It panics on a nil inserter so miswiring
// fails at start.
func New(ins BatchInserter, o Options) *Committer {
	if ins == nil {
		panic("groupcommit: nil inserter")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if ps, ok := ins.(poolSizer); ok {
		if n := ps.MaxOpenConns(); n > 0 && o.Concurrency > n {
			o.Concurrency = n
		}
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Linger < 0 {
		o.Linger = 0
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	c := &Committer{
		ins:      ins,
		opts:     o,
		reqs:     make(chan *request),
		finished: make(chan struct{}),
		stop:     make(chan struct{}),
	}
	c.done.Add(1)
	go c.loop()
	return c
}

// Concurrency is the number of InsertBatch calls that may run at once,
// after defaults and the pool cap.
func (c *Committer) Concurrency() int { return c.opts.Concurrency }

// Insert stores ev like store.Store.Insert, sharing a transaction with
// concurrent callers. A nil error means the record's transaction committed
// and the message may be acked; bad data in ev fails ev alone.
//
// When ctx ends first, Insert returns ctx.Err() at once. The event may
// still be committed by a batch already under way; the caller's retry then
// finds its own row and gets Inserted (same message ID), so nothing is lost
// or reported twice.
func (c *Committer) Insert(ctx context.Context, ev syncevent.Event) (store.Outcome, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	r := &request{ctx: ctx, ev: ev, arrived: time.Now(), reply: make(chan store.BatchResult, 1)}
	select {
	case c.reqs <- r:
	case <-c.stop:
		return "", ErrClosed
	case <-ctx.Done():
		return "", ctx.Err()
	}
	select {
	case res := <-r.reply:
		return res.Outcome, res.Err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Close stops taking requests, sends what is queued and waits for every
// batch to finish. Inserts after Close fail with ErrClosed.
func (c *Committer) Close() {
	c.closing.Do(func() { close(c.stop) })
	c.done.Wait()
}

// loop owns the queue and the count of busy slots.
func (c *Committer) loop() {
	defer c.done.Done()
	var (
		queue    []*request
		busy     int
		stopping bool
		linger   *time.Timer
		lingerC  <-chan time.Time
	)
	for {
		for busy < c.opts.Concurrency && len(queue) > 0 {
			if wait := c.lingerFor(queue, stopping); wait > 0 {
				if lingerC == nil {
					linger = time.NewTimer(wait)
					lingerC = linger.C
				}
				break
			}
			var batch []*request
			batch, queue = c.take(queue)
			if len(batch) == 0 {
				continue // every queued caller had given up
			}
			busy++
			c.done.Add(1)
			go c.run(batch)
		}
		if stopping && busy == 0 && len(queue) == 0 {
			return
		}
		reqs, stop := c.reqs, c.stop
		if stopping {
			reqs, stop = nil, nil
		}
		select {
		case r := <-reqs:
			queue = append(queue, r)
		case <-c.finished:
			busy--
		case <-lingerC:
			lingerC = nil
		case <-stop:
			stopping = true
		}
		if lingerC != nil && (len(queue) >= c.opts.MaxBatch || stopping) {
			linger.Stop()
			lingerC = nil
		}
	}
}

// lingerFor is how long the head of the queue should still wait for
// company before it leaves with a free slot.
func (c *Committer) lingerFor(queue []*request, stopping bool) time.Duration {
	if c.opts.Linger == 0 || stopping || len(queue) >= c.opts.MaxBatch {
		return 0
	}
	return time.Until(queue[0].arrived.Add(c.opts.Linger))
}

// take removes the next batch from queue, oldest first: at most MaxBatch
// requests, at most one per key (store.InsertBatch would split a second
// one into its own transaction anyway; in a later batch it costs nothing
// extra and keeps this one to one transaction). Requests whose caller has
// gone are dropped.
func (c *Committer) take(queue []*request) (batch, rest []*request) {
	keys := make(map[string]bool, min(len(queue), c.opts.MaxBatch))
	rest = queue[:0]
	for _, r := range queue {
		switch {
		case r.ctx.Err() != nil:
			// The caller already returned ctx.Err().
		case len(batch) < c.opts.MaxBatch && !keys[r.ev.Key]:
			keys[r.ev.Key] = true
			batch = append(batch, r)
		default:
			rest = append(rest, r)
		}
	}
	clear(queue[len(rest):])
	return batch, rest
}

// run makes one InsertBatch call and hands each caller its result.
func (c *Committer) run(batch []*request) {
	defer c.done.Done()
	evs := make([]syncevent.Event, len(batch))
	for i, r := range batch {
		evs[i] = r.ev
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	start := time.Now()
	res := c.ins.InsertBatch(ctx, evs)
	took := time.Since(start)
	cancel()
	if len(res) != len(batch) {
		err := fmt.Errorf("groupcommit: inserter returned %d results for %d events", len(res), len(batch))
		res = make([]store.BatchResult, len(batch))
		for i := range res {
			res[i].Err = err
		}
	}
	if c.opts.OnBatch != nil {
		var first error
		for _, r := range res {
			if r.Err != nil {
				first = r.Err
				break
			}
		}
		c.opts.OnBatch(len(batch), took, first)
	}
	for i, r := range batch {
		r.reply <- res[i]
	}
	c.finished <- struct{}{}
}
