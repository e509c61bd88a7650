package main

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
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
	waitUntil(t, 3*time.Minute, "the demo batch to be acked", func() bool {
		st := emulatorStats(t, a.mq)
		return st.Published > 0 && st.Acked == st.Published && st.InFlight == 0 && st.Ready == 0
	})
	p.stop(t)
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	patients := demoPatientValues(n, rng)
	if len(patients) == 0 {
		t.Fatal("no demo patient value to look for")
	}
	quarantined, sdk := 0, 0
	for i, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("log line %d is not one JSON object (%v): %s", i+1, err, line)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := obj[k].(string); !ok {
				t.Errorf("log line %d has no %s: %s", i+1, k, line)
			}
		}
		if obj["level"] == "ERROR" {
			t.Errorf("ERROR in a clean demo run: %s", line)
		}
		if obj["level"] == "INFO" && obj["msg"] == "message quarantined" {
			quarantined++
		}
		if _, ok := obj["TaskQueue"]; ok {
			sdk++
		}
		for _, v := range patients {
			if strings.Contains(line, v) {
				t.Errorf("log line %d holds a demo patient's value %q: %s", i+1, v, line)
			}
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

// demoPatientValues are the patient IDs and notes of the demo batch that
// cannot occur in a log by chance (8 characters or more, with a letter).
func demoPatientValues(n int, rng int64) []string {
	var out []string
	for _, m := range demoBatch(n, rng) {
		var b struct {
			PatientData struct {
				PatientID any `json:"patientId"`
				Notes     any `json:"notes"`
			} `json:"patientData"`
		}
		if json.Unmarshal(m.Body, &b) != nil {
			continue
		}
		for _, v := range []any{b.PatientData.PatientID, b.PatientData.Notes} {
			if s, ok := v.(string); ok && len(s) >= 8 && strings.IndexFunc(s, unicode.IsLetter) >= 0 {
				out = append(out, s)
			}
		}
	}
	return out
}
