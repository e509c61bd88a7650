package mqemu

import (
	"math/rand/v2"
	"testing"
)

// TestTailIndexAgreesWithWalk checks the group's indexed tail count
// against a plain walk of the same tail, while the log grows, the cursor
// moves, timed messages fall due and the filter changes.
func TestTailIndexAgreesWithWalk(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	tp := newTopic("t")
	g := newGroup(tp, "g")
	filters := []string{"", "a", "a||b", "c", "*"}
	tags := []string{"a", "b", "c", ""}
	nowMs := int64(1_000_000)
	for step := range 2000 {
		for range rng.IntN(20) {
			m := &message{index: len(tp.log), tag: tags[rng.IntN(len(tags))]}
			if rng.IntN(5) == 0 {
				m.deliverMs = nowMs + int64(rng.IntN(400)) - 100
			}
			tp.log = append(tp.log, m)
		}
		if rng.IntN(3) == 0 && g.next < len(tp.log) {
			g.next += rng.IntN(len(tp.log)-g.next) + 1
		}
		if rng.IntN(50) == 0 {
			g.filter = parseTagFilter(filters[rng.IntN(len(filters))])
		}
		nowMs += int64(rng.IntN(10))
		var got, want GroupStats
		g.countTail(&got, nowMs)
		countTail(&want, tp.log[g.next:], g.filter, nowMs)
		if got != want {
			t.Fatalf("step %d (log %d, next %d, filter %q): indexed %+v, walked %+v", step, len(tp.log), g.next, g.filter.raw, got, want)
		}
	}
	if g.next == 0 || len(g.tail.timed) == 0 {
		t.Fatalf("the walk never moved the cursor (%d) or saw a timed message (%d)", g.next, len(g.tail.timed))
	}
}
