package activities

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/store"
)

// collected runs collect with the given linger and returns its runs
// channel; collect stops with the test.
func collected(t *testing.T, linger time.Duration) (*Notices, <-chan []store.Notice) {
	t.Helper()
	n := &Notices{Linger: linger}
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
	n, runs := collected(t, time.Second)
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
	n, runs := collected(t, time.Minute)
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

// SyncKeys is one search attribute value: a run's keys stay within its
// byte bound even when fewer than maxNoticeRecords fill it.
func TestNoticesRunKeysFitOneValue(t *testing.T) {
	n, runs := collected(t, 300*time.Millisecond)
	long := strings.Repeat("k", 200)
	for i := range 20 {
		n.queue <- store.Notice{Key: fmt.Sprintf("%s%02d", long, i), Outcome: "quarantined"}
	}
	total := 0
	for total < 20 {
		r := nextRun(t, runs, 5*time.Second)
		bytes := 0
		for _, x := range r {
			bytes += noticeKeySize(x)
		}
		if bytes > maxNoticeKeyBytes {
			t.Errorf("a run's keys take %d bytes, over the %d bound", bytes, maxNoticeKeyBytes)
		}
		total += len(r)
	}
	if total != 20 {
		t.Errorf("%d notices handed over, want 20", total)
	}
}

// A lone notice is started once the linger passes, not held for company.
func TestNoticesLoneNoticeWaitsOnlyTheLinger(t *testing.T) {
	n, runs := collected(t, 150*time.Millisecond)
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
