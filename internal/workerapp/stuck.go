package workerapp

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/uber-go/tally/v4"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/contract"
)

// Why a sampler: a record stuck on the database or the broker shows in
// Temporal only as a pending activity whose attempt count grows; no
// counter of ours moves while it waits. The age of running record
// workflows is the one signal that needs no change to the record path,
// costs one visibility count per interval per worker, and is what an
// operator acts on (`starter status` lists what each one waits on).
const (
	// DefaultStuckAfter is the age at which a running record counts as
	// stuck. Healthy records finish in seconds; 15 minutes rides out a
	// database failover and a broker hiccup but not a real outage. Same
	// default as `starter reconcile --stuck-after` and `starter status`.
	DefaultStuckAfter = 15 * time.Minute
	// defaultStuckSampleEvery: the alert on the gauge waits minutes, so a
	// sample every 30 s costs little and loses nothing.
	defaultStuckSampleEvery = 30 * time.Second
)

// StuckQuery is the visibility query for record workflows of taskQueue
// running since before now-after.
func StuckQuery(taskQueue string, now time.Time, after time.Duration) string {
	return fmt.Sprintf("%s AND TaskQueue = '%s' AND ExecutionStatus = 'Running' AND StartTime < '%s'",
		contract.RecordTypesQuery, taskQueue, now.Add(-after).UTC().Format(time.RFC3339Nano))
}

// stuckSampler keeps the stuck-records gauge current.
type stuckSampler struct {
	tc        client.Client
	taskQueue string
	after     time.Duration // zero: DefaultStuckAfter
	every     time.Duration // zero: defaultStuckSampleEvery
	gauge     tally.Gauge
	log       *slog.Logger
}

// Start samples at once and then every interval until ctx ends or stop is
// called; stop waits for the loop to exit.
func (s *stuckSampler) Start(ctx context.Context) (stop func()) {
	if s.after <= 0 {
		s.after = DefaultStuckAfter
	}
	if s.every <= 0 {
		s.every = defaultStuckSampleEvery
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.every)
		defer t.Stop()
		failing := false
		for {
			err := s.sample(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil && !failing:
				// The gauge keeps its last value: an unreachable
				// visibility store says nothing about the records.
				s.log.Warn("stuck-records sample failed; keeping the last value", "error", err)
			case err == nil && failing:
				s.log.Info("stuck-records sampling recovered")
			}
			failing = err != nil
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (s *stuckSampler) sample(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	q := StuckQuery(s.taskQueue, time.Now(), s.after)
	resp, err := s.tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q})
	if err != nil {
		return fmt.Errorf("count stuck records: %w", err)
	}
	s.gauge.Update(float64(resp.GetCount()))
	return nil
}
