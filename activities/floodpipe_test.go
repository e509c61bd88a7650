package activities

import (
	"sync/atomic"
	"testing"
	"time"
)

// A poller gathers its next group while the previous one settles, settles
// at most one group at a time, and its poll activity does not end before
// the group being settled is settled (acked).
func TestFloodPipeOneGroupAtATime(t *testing.T) {
	var fl floodPipe
	release := make(chan struct{})
	var settled atomic.Int32
	fl.settle(func() { <-release; settled.Add(1) })
	// settle returned while the group is still settling: the poller is
	// free to gather the next one.
	if settled.Load() != 0 {
		t.Fatal("settle waited for its group")
	}

	var running, most atomic.Int32
	group := func() {
		if n := running.Add(1); n > most.Load() {
			most.Store(n)
		}
		time.Sleep(10 * time.Millisecond)
		running.Add(-1)
		settled.Add(1)
	}
	close(release)
	fl.settle(group)
	fl.settle(group)
	fl.wait()
	if settled.Load() != 3 {
		t.Fatalf("wait returned with %d of 3 groups settled", settled.Load())
	}
	if most.Load() != 1 {
		t.Fatalf("%d groups settled at once, want 1", most.Load())
	}
}
