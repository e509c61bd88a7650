package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// A clean demo run, start to SIGTERM, logs no ERROR line: the demo batch's
// malformed messages (an expected outcome) and the embedded server's
// shutdown noise are not errors. Every ERROR line an operator sees must be
// a real problem.
func TestCleanDemoLogsNoError(t *testing.T) {
	a := newAddrs(t)
	p := startDev(t, a, nil) // default demo batch: 24 events, two malformed
	waitUntil(t, 3*time.Minute, "the demo batch to be acked", func() bool {
		st := emulatorStats(t, a.mq)
		return st.Published > 0 && st.Acked == st.Published && st.InFlight == 0 && st.Ready == 0
	})
	p.stop(t)
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("ERROR in a clean demo run: %s", line)
		}
	}
	// The quiet log is not a silent one: every malformed message is
	// reported when it is quarantined, below ERROR.
	if !strings.Contains(log, "level=INFO msg=\"message quarantined\"") {
		t.Errorf("the demo's quarantine is not in the log:\n%s", tail(log, 4000))
	}
}
