package chaos

import (
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The short chaos run of every `go test`: 500 messages through two worker
// processes, with duplicate delivery, expired handles and 5xx from the
// broker, one SIGKILL and a 5 s database cut.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos drain takes minutes")
	}
	Run(t, Plan{
		Messages:      500,
		Workers:       2,
		Kills:         []float64{0.3},
		CutAt:         0.5,
		CutFor:        5 * time.Second,
		Faults:        mqemu.Faults{DuplicateRate: 0.05, ExpireRate: 0.02, ErrorRate: 0.02},
		InvisibleTime: 20 * time.Second,
		Timeout:       4 * time.Minute,
	})
}
