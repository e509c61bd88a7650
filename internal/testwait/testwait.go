// Package testwait waits in tests for a condition that another goroutine,
// process or server makes true.
package testwait

import (
	"testing"
	"time"
)

// Until polls cond until it holds, and fails tb if it does not within
// timeout, naming what it waited for. It polls often at first (most waits
// are short) and then every 200 ms, which keeps a condition that asks a
// server (a visibility query, an HTTP call) from loading it.
func Until(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 200*time.Millisecond)
	}
}
