package activities

import (
	"context"
	"sync"
	"time"
)

// Flood mode asks, for every group, which of its keys have a running
// record workflow (runningKeys), so that nothing writes a key twice at
// once. Asked once per group, that is a visibility query per 256 messages,
// and visibility is rate limited where the drain runs: a self-hosted
// frontend answers 10 of them per second per namespace by default
// (frontend.namespaceRPS.visibility), and Temporal Cloud limits visibility
// apart from its other requests. On the rehearsal cluster, flood mode
// drained at 2,300 msgs/s whatever its mix, one group per query the
// limit let through, against 12,000-16,000 for its bulk ceiling.
//
// So the pollers of one worker share their listings of running records:
// a group is checked against a listing asked for at most runningMaxAge
// before the group was gathered (the listing already trailed the commit
// by the query's own time and the visibility store's lag), plus every
// record this worker started or signalled within runningLocalMemory,
// which covers its own hand-overs whatever visibility's lag.
const (
	runningMaxAge      = time.Second
	runningLocalMemory = 10 * time.Second
)

// runningListing is one answer to "which records run on this task queue".
type runningListing struct {
	at       time.Time       // when it was asked for
	ids      map[string]bool // workflow IDs of running records
	complete bool            // false: more ran than one page holds
	err      error
	done     chan struct{} // closed once ids, complete and err are set
}

// runningRecords shares listings among a worker's pollers: at most one is
// asked for at a time, and a fresh enough one is reused.
type runningRecords struct {
	mu       sync.Mutex
	last     *runningListing // newest successful listing
	inflight *runningListing // being asked for
	started  map[string]time.Time
	pruned   time.Time
	now      func() time.Time // tests
}

func (r *runningRecords) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

// listing returns a listing asked for no earlier than fresh, asking with
// list when none is, or waiting for the one being asked for.
func (r *runningRecords) listing(ctx context.Context, fresh time.Time, list func(context.Context) (map[string]bool, bool, error)) (*runningListing, error) {
	for {
		r.mu.Lock()
		if r.last != nil && !r.last.at.Before(fresh) {
			l := r.last
			r.mu.Unlock()
			return l, nil
		}
		l := r.inflight
		if l == nil {
			l = &runningListing{at: r.clock(), done: make(chan struct{})}
			r.inflight = l
			r.mu.Unlock()
			l.ids, l.complete, l.err = list(ctx)
			r.mu.Lock()
			r.inflight = nil
			if l.err == nil && (r.last == nil || r.last.at.Before(l.at)) {
				r.last = l
			}
			r.mu.Unlock()
			close(l.done)
			return l, l.err
		}
		r.mu.Unlock()
		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if !l.at.Before(fresh) {
			return l, l.err
		}
		// Asked for before this group was gathered: ask again.
	}
}

// noteStarted records that this worker started, or signalled, the record
// workflow id: it runs, whether or not visibility shows it yet.
func (r *runningRecords) noteStarted(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock()
	if r.started == nil {
		r.started = map[string]time.Time{}
	}
	if now.Sub(r.pruned) >= runningLocalMemory {
		// Entries live at most twice the memory: pruned in one pass
		// every runningLocalMemory, not on every start.
		for id, at := range r.started {
			if now.Sub(at) >= runningLocalMemory {
				delete(r.started, id)
			}
		}
		r.pruned = now
	}
	r.started[id] = now
}

// startedRecently reports whether this worker started or signalled id
// within runningLocalMemory.
func (r *runningRecords) startedRecently(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.started[id]
	return ok && r.clock().Sub(at) < runningLocalMemory
}
