package activities

import (
	"context"
	"testing"
	"time"

	"github.com/uber-go/tally/v4"

	"github.com/syncbridge/syncbridge/internal/metrics"
)

// The rows-per-second cap holds for groups larger than its burst, and
// slow commits shrink the group while fast ones grow it back.
func TestFloodPacing(t *testing.T) {
	a := &Activities{Metrics: metrics.NewPipeline(tally.NoopScope), Settings: Settings{Flood: Flood{Enabled: true, Batches: 4, RowsPerSecond: 100, SlowCommit: 50 * time.Millisecond}}}
	f := a.floodInit()
	start := time.Now()
	if err := a.waitRows(context.Background(), 100); err != nil { // the burst
		t.Fatal(err)
	}
	if err := a.waitRows(context.Background(), 150); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 1400*time.Millisecond {
		t.Fatalf("250 rows at 100/s (burst 100) took %s, want about 1.5s", took)
	}
	if !a.adapt(f, 100*time.Millisecond) || a.groupBatches() != 2 {
		t.Fatalf("a slow commit must halve the group: %d", a.groupBatches())
	}
	a.adapt(f, time.Millisecond)
	a.adapt(f, time.Millisecond)
	a.adapt(f, time.Millisecond)
	if a.groupBatches() != 4 {
		t.Fatalf("fast commits grow the group back to its limit, got %d", a.groupBatches())
	}
}
