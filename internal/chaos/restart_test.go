package chaos

import (
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/mqemu"
)

// A Temporal server restart mid-drain (own server on a SQLite file, same
// address), with a worker kill, loses and doubles nothing.
func TestChaosTemporalRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos drain takes minutes")
	}
	Run(t, Plan{
		Messages:          300,
		Workers:           2,
		Kills:             []float64{0.2},
		RestartTemporalAt: 0.4,
		Faults:            mqemu.Faults{DuplicateRate: 0.05, ExpireRate: 0.02, ErrorRate: 0.02},
		InvisibleTime:     20 * time.Second,
		Timeout:           5 * time.Minute,
	})
}
