//go:build chaos

package chaos

import (
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/mqemu"
)

// TestChaos is `make chaos`: 10,000 messages, three SIGKILLs, a 30 s
// database cut and a Temporal server restart (the run's own server, on a
// SQLite file, stopped and started on the same address).
func TestChaos(t *testing.T) {
	Run(t, Plan{
		Messages:          10_000,
		Workers:           3,
		Kills:             []float64{0.2, 0.45, 0.7},
		CutAt:             0.55,
		CutFor:            30 * time.Second,
		Faults:            mqemu.Faults{DuplicateRate: 0.05, ExpireRate: 0.02, ErrorRate: 0.02},
		InvisibleTime:     30 * time.Second,
		Timeout:           45 * time.Minute,
		RestartTemporalAt: 0.8,
	})
}
