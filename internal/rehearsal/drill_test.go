package rehearsal

import (
	"strings"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/syncevent"
)

func TestTrackerRateAndStall(t *testing.T) {
	// Samples every 200 ms: 10 acks/s for 10 s, none for 6 s, 10 acks/s
	// again for 4 s, the last sample now.
	now := time.Now()
	tr := &tracker{}
	for i := 0; i <= 100; i++ {
		n := 2 * min(i, 50)
		if i > 80 {
			n = 100 + 2*(i-80)
		}
		tr.ts, tr.n = append(tr.ts, now.Add(-time.Duration(100-i)*200*time.Millisecond)), append(tr.n, n)
	}
	if got := tr.longestStall(); got < 6100*time.Millisecond || got > 6300*time.Millisecond {
		t.Errorf("longest stall %s, want 6.2s", got)
	}
	if r := tr.rate(3 * time.Second); r < 9 || r > 11 {
		t.Errorf("rate after the stall %.1f acks/s, want 10", r)
	}
	// A window reaching into the stall averages it in.
	if r := tr.rate(8 * time.Second); r < 4 || r > 6 {
		t.Errorf("rate over 8 s %.1f acks/s, want 5", r)
	}
}

func TestFaultsLeaveBacklogOnBothSides(t *testing.T) {
	for _, n := range []int{1, 2, len(AllFaults)} {
		first, last := faultAt(0, n), faultAt(n-1, n)
		if first < 0.1 || last > 0.8 || (n > 1 && last <= first) {
			t.Errorf("%d faults at %.2f..%.2f of the backlog", n, first, last)
		}
	}
}

func TestDrillMessagesCrossHTTP(t *testing.T) {
	msgs := drillMessages(2000, "p-")
	bad := 0
	for _, m := range msgs {
		if m.Kind == syncevent.KindBadPrefix+syncevent.ReasonInvalidUTF8 {
			t.Fatal("invalid UTF-8 cannot cross the HTTP API")
		}
		if strings.HasPrefix(m.Kind, syncevent.KindBadPrefix) {
			bad++
		}
	}
	if len(msgs) < 1950 || bad == 0 {
		t.Errorf("%d messages, %d malformed", len(msgs), bad)
	}
}
