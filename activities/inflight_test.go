package activities

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
)

type fakeCounter struct {
	calls int
	count int64
	err   error
	query string
}

func (f *fakeCounter) CountWorkflow(_ context.Context, req *workflowservice.CountWorkflowExecutionsRequest) (*workflowservice.CountWorkflowExecutionsResponse, error) {
	f.calls++
	f.query = req.GetQuery()
	if f.err != nil {
		return nil, f.err
	}
	return &workflowservice.CountWorkflowExecutionsResponse{Count: f.count}, nil
}

// At most one visibility count per refresh interval, however often the
// pollers ask; records started in between are added to the estimate.
func TestInflightCountsAtMostOncePerInterval(t *testing.T) {
	var c inflightCache
	f := &fakeCounter{count: 10}
	t0 := time.Unix(1000, 0)
	for i := 0; i < 50; i++ {
		n, _, err := c.estimate(context.Background(), f, "q", t0.Add(time.Duration(i)*10*time.Millisecond))
		if err != nil || n < 10 {
			t.Fatalf("estimate %d: %d, %v", i, n, err)
		}
		c.noteStarted()
	}
	if f.calls != 1 {
		t.Fatalf("%d counts in half a second, want 1", f.calls)
	}
	if !strings.Contains(f.query, "RecordWorkflowV2") || !strings.Contains(f.query, "'RecordWorkflow'") {
		t.Fatalf("count must cover both record shapes: %s", f.query)
	}
	n, _, _ := c.estimate(context.Background(), f, "q", t0.Add(900*time.Millisecond))
	if n != 10+50 {
		t.Fatalf("estimate between counts %d, want the count plus the 50 started since", n)
	}
	f.count = 3
	n, fresh, _ := c.estimate(context.Background(), f, "q", t0.Add(1100*time.Millisecond))
	if n != 3 || !fresh || f.calls != 2 {
		t.Fatalf("after the interval: estimate %d fresh %t calls %d, want a new count of 3", n, fresh, f.calls)
	}
}

// A failing count keeps the last value for a while, then fails closed;
// before any count succeeded it fails closed at once.
func TestInflightFailsClosedWhenCountIsStale(t *testing.T) {
	var c inflightCache
	f := &fakeCounter{err: errors.New("visibility unavailable")}
	t0 := time.Unix(1000, 0)
	if _, _, err := c.estimate(context.Background(), f, "q", t0); !errors.Is(err, errCountStale) {
		t.Fatalf("no count yet: %v, want errCountStale", err)
	}
	f.err = nil
	f.count = 7
	if n, _, err := c.estimate(context.Background(), f, "q", t0.Add(2*time.Second)); err != nil || n != 7 {
		t.Fatalf("recovered count: %d, %v", n, err)
	}
	f.err = errors.New("visibility unavailable")
	n, _, err := c.estimate(context.Background(), f, "q", t0.Add(10*time.Second))
	if err == nil || errors.Is(err, errCountStale) || n != 7 {
		t.Fatalf("recent count: %d, %v; want the last value with a warning", n, err)
	}
	if _, _, err := c.estimate(context.Background(), f, "q", t0.Add(2*time.Second+inflightStale+time.Second)); !errors.Is(err, errCountStale) {
		t.Fatalf("stale count: %v, want errCountStale (fail closed)", err)
	}
}
