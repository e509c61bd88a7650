package main

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/testenv"
	"github.com/syncbridge/syncbridge/internal/testwait"
)

// A clean demo run, start to SIGTERM, with SYNCBRIDGE_LOG_FORMAT=json:
// every line of the log (stderr; the banner is on stdout) is one JSON
// object with time, level and msg, the SDK's lines included, and none is
// at ERROR: the demo batch's malformed messages (an expected outcome) and
// the embedded server's shutdown noise are not errors. Every ERROR line an
// operator sees must be a real problem. No line holds a demo patient's ID
// or notes.
func TestCleanDemoLogsNoError(t *testing.T) {
	a := newAddrs(t)
	const n, rng = 24, 7 // the default demo batch's size: two malformed
	p := startDev(t, a, []string{"SYNCBRIDGE_LOG_FORMAT=json"}, "-dev-seed", strconv.Itoa(n), "-dev-seed-rng", strconv.Itoa(rng))
	testwait.Until(t, 3*time.Minute, "the demo batch to be acked", func() bool {
		st := emulatorStats(t, a.mq)
		return st.Published > 0 && st.Acked == st.Published && st.InFlight == 0 && st.Ready == 0
	})
	p.stop(t)
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	patients := testenv.PatientValues(demoBatch(n, rng))
	if len(patients) == 0 {
		t.Fatal("no demo patient value to look for")
	}
	quarantined, sdk := 0, 0
	for _, obj := range testenv.CheckJSONLog(t, string(b), patients) {
		if obj["level"] == "ERROR" {
			t.Errorf("ERROR in a clean demo run: %v", obj)
		}
		if obj["level"] == "INFO" && obj["msg"] == "message quarantined" {
			quarantined++
		}
		if _, ok := obj["TaskQueue"]; ok {
			sdk++
		}
	}
	// The quiet log is not a silent one: every malformed message is
	// reported when it is quarantined, below ERROR.
	if quarantined == 0 {
		t.Errorf("the demo's quarantine is not in the log:\n%s", tail(string(b), 4000))
	}
	// The SDK's lines go through the same handler.
	if sdk == 0 {
		t.Errorf("no line of the Temporal SDK (with its TaskQueue field) in the JSON log:\n%s", tail(string(b), 4000))
	}
}
