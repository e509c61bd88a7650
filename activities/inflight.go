package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
)

// In-flight cap timing. A visibility count per batch cost a query per 16
// messages and, when visibility was slow, most of the poll loop; the count
// only needs to be roughly current, because the cap protects the database
// and the workers, not an exact number.
const (
	// inflightRefresh: at most one count per this interval per worker
	// process, shared by all its pollers.
	inflightRefresh = time.Second
	// inflightStale: when counting has failed for this long, polling
	// pauses. An unknown number of running records must not be treated as
	// zero (fail closed).
	inflightStale = 30 * time.Second
)

// counter is the part of the Temporal client the cap needs.
type counter interface {
	CountWorkflow(ctx context.Context, req *workflowservice.CountWorkflowExecutionsRequest) (*workflowservice.CountWorkflowExecutionsResponse, error)
}

var _ counter = client.Client(nil)

// errCountStale is returned when no recent count is known.
var errCountStale = errors.New("running records have not been counted successfully for too long; polling paused")

// inflightCache estimates running record workflows between counts: the
// last count plus the records this process started since, an
// overestimate (some of those have finished) that errs on the safe side.
type inflightCache struct {
	mu      sync.Mutex
	count   int64
	counted time.Time // last successful count; zero: none yet
	next    time.Time // earliest next attempt
	started int64
}

// estimate returns the estimated number of running records, counting
// again when the last count is older than inflightRefresh. It fails
// (errCountStale, wrapped with the last error) once no count has
// succeeded for inflightStale, and before the first success.
func (c *inflightCache) estimate(ctx context.Context, cnt counter, taskQueue string, now time.Time) (int64, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var lastErr error
	refreshed := false
	if !now.Before(c.next) {
		c.next = now.Add(inflightRefresh)
		q := fmt.Sprintf("%s AND ExecutionStatus = 'Running' AND TaskQueue = '%s'", contract.RecordTypesQuery, taskQueue)
		resp, err := cnt.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q})
		if err == nil {
			c.count, c.counted, c.started = resp.GetCount(), now, 0
			refreshed = true
		} else {
			lastErr = err
		}
	}
	if c.counted.IsZero() || now.Sub(c.counted) > inflightStale {
		if lastErr == nil {
			lastErr = errors.New("no count attempted yet")
		}
		return 0, false, fmt.Errorf("%w: %w", errCountStale, lastErr)
	}
	if lastErr != nil {
		// Recent enough: keep the last known value, say why it is old.
		return c.count + c.started, false, fmt.Errorf("count running records (using the count from %s ago): %w", now.Sub(c.counted).Round(time.Millisecond), lastErr)
	}
	return c.count + c.started, refreshed, nil
}

func (c *inflightCache) noteStarted() {
	c.mu.Lock()
	c.started++
	c.mu.Unlock()
}
