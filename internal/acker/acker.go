// Package acker coalesces receipt-handle acknowledgements from many
// concurrent record workflows in one worker process into AckMessage calls
// of up to 16 handles, the broker's batch limit. During a backlog drain
// hundreds of workflows ack within milliseconds of each other; one call per
// workflow would multiply MQ requests (and QPS-limit errors) by up to 16.
package acker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/syncbridge/syncbridge/internal/mqclient"
)

// MaxBatch is the broker's limit of handles per AckMessage call.
const MaxBatch = 16

// Result tells a caller what became of its handles.
type Result struct {
	// Acked handles were accepted by the broker.
	Acked int
	// Refused handles were unknown to the broker: expired, or superseded
	// by a redelivery. The message itself is committed; its next delivery
	// will be acked as a duplicate.
	Refused []mqclient.HandleError
}

// Options tune an Acker.
type Options struct {
	// FlushInterval is the longest a handle waits for others to share its
	// call. Zero means 50ms.
	FlushInterval time.Duration
	// Concurrency is how many AckMessage calls may be in flight. Zero
	// means 4.
	Concurrency int
	// OnBatch, if set, observes every call (for metrics).
	OnBatch func(handles int, took time.Duration, err error)
}

// Acker batches acknowledgements. Create with New; Close to stop.
type Acker struct {
	consumer mqclient.Consumer
	opts     Options
	reqs     chan *request
	sem      chan struct{}
	stop     chan struct{}
	done     sync.WaitGroup
	closeMu  sync.Once
}

type request struct {
	handles []string
	reply   chan reply
}

type reply struct {
	res Result
	err error
}

// ErrClosed is returned by Ack after Close.
var ErrClosed = errors.New("acker closed")

// New starts an Acker for one consumer group.
func New(c mqclient.Consumer, o Options) *Acker {
	if c == nil {
		panic("acker: nil consumer")
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 50 * time.Millisecond
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	a := &Acker{
		consumer: c,
		opts:     o,
		reqs:     make(chan *request),
		sem:      make(chan struct{}, o.Concurrency),
		stop:     make(chan struct{}),
	}
	a.done.Add(1)
	go a.loop()
	return a
}

// Ack acknowledges handles, sharing calls with concurrent callers. A
// non-nil error means the call failed as a whole and the caller should
// retry; refused handles are not an error.
func (a *Acker) Ack(ctx context.Context, handles []string) (Result, error) {
	// Every chunk of up to MaxBatch goes in before any reply is awaited,
	// so a caller with many handles (flood mode) shares calls and runs
	// them concurrently instead of one after another.
	var reqs []*request
	for start := 0; start < len(handles); start += MaxBatch {
		end := min(start+MaxBatch, len(handles))
		r := &request{handles: handles[start:end], reply: make(chan reply, 1)}
		select {
		case a.reqs <- r:
			reqs = append(reqs, r)
		case <-a.stop:
			return Result{}, ErrClosed
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	var total Result
	var firstErr error
	for _, r := range reqs {
		select {
		case rep := <-r.reply:
			if rep.err != nil && firstErr == nil {
				firstErr = rep.err
			}
			total.Acked += rep.res.Acked
			total.Refused = append(total.Refused, rep.res.Refused...)
		case <-ctx.Done():
			// The calls may still succeed; acking again later is harmless
			// (the handle is then refused and counted as such).
			return total, ctx.Err()
		}
	}
	if firstErr != nil {
		return total, firstErr
	}
	return total, nil
}

// Close flushes pending batches and waits for in-flight calls.
func (a *Acker) Close() {
	a.closeMu.Do(func() { close(a.stop) })
	a.done.Wait()
}

func (a *Acker) loop() {
	defer a.done.Done()
	var (
		batch   []*request
		n       int
		timer   = time.NewTimer(time.Hour)
		waiting bool
	)
	timer.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		b := batch
		batch, n = nil, 0
		if waiting {
			timer.Stop()
			waiting = false
		}
		a.sem <- struct{}{}
		a.done.Add(1)
		go func() {
			defer a.done.Done()
			defer func() { <-a.sem }()
			a.send(b)
		}()
	}
	for {
		select {
		case r := <-a.reqs:
			if n+len(r.handles) > MaxBatch {
				flush()
			}
			batch = append(batch, r)
			n += len(r.handles)
			if n >= MaxBatch {
				flush()
			} else if !waiting {
				timer.Reset(a.opts.FlushInterval)
				waiting = true
			}
		case <-timer.C:
			waiting = false
			flush()
		case <-a.stop:
			flush()
			return
		}
	}
}

// send makes one AckMessage call for a batch and distributes the outcome.
func (a *Acker) send(batch []*request) {
	var handles []string
	for _, r := range batch {
		handles = append(handles, r.handles...)
	}
	// Bounded independently of callers: a caller that gave up must not
	// leave a call hanging forever.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	start := time.Now()
	failed, err := a.consumer.Ack(ctx, handles)
	if a.opts.OnBatch != nil {
		a.opts.OnBatch(len(handles), time.Since(start), err)
	}
	refused := make(map[string]mqclient.HandleError, len(failed))
	for _, f := range failed {
		refused[f.Handle] = f
	}
	for _, r := range batch {
		if err != nil {
			r.reply <- reply{err: fmt.Errorf("ack batch of %d: %w", len(handles), err)}
			continue
		}
		var res Result
		for _, h := range r.handles {
			if f, ok := refused[h]; ok {
				res.Refused = append(res.Refused, f)
			} else {
				res.Acked++
			}
		}
		r.reply <- reply{res: res}
	}
}
