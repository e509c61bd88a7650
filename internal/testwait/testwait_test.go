package testwait

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	go func() {
		time.Sleep(50 * time.Millisecond)
		n.Store(1)
	}()
	start := time.Now()
	Until(t, 5*time.Second, "the flag", func() bool { return n.Load() == 1 })
	if d := time.Since(start); d > time.Second {
		t.Errorf("returned %s after the condition held at 50ms", d)
	}
}

// fatalTB records a Fatalf instead of ending the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = format
	panic(f)
}

func TestUntilFailsAfterTheTimeout(t *testing.T) {
	f := &fatalTB{TB: t}
	start := time.Now()
	func() {
		defer func() {
			if r := recover(); r != f {
				t.Fatalf("Until did not fail: recovered %v", r)
			}
		}()
		Until(f, 100*time.Millisecond, "a condition that never holds", func() bool { return false })
	}()
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("failed after %s, before the 100ms timeout", d)
	}
	if f.msg == "" {
		t.Error("no failure message")
	}
}
