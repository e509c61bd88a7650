package testenv

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// PatientMarker stands for a patient value in hand-made messages: in a
// log, it can only have come from a message body.
const PatientMarker = "PATIENT-MARKER-4d1e"

// PatientValues are the patient IDs and notes in msgs' bodies that cannot
// occur in a log by chance: 8 characters or more, with a letter (the
// generator's numeric IDs would match timestamps and durations).
func PatientValues(msgs []syncevent.OutMessage) []string {
	var out []string
	for _, m := range msgs {
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
			if s, ok := v.(string); ok && len(s) >= 8 && strings.IndexFunc(s, unicode.IsLetter) >= 0 && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// CheckJSONLog reads a log written by internal/logging in JSON and returns
// its lines decoded. It fails t on a line that is not one JSON object with
// time, level and msg, and on every line holding one of patient in a field
// name or a string value, however deep.
func CheckJSONLog(t testing.TB, log string, patient []string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for i, line := range strings.Split(strings.TrimRight(log, "\n"), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("log line %d is not one JSON object (%v): %s", i+1, err, line)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := obj[k].(string); !ok {
				t.Errorf("log line %d has no %s: %s", i+1, k, line)
			}
		}
		if leaks := patientLeaks(obj, patient); len(leaks) > 0 {
			t.Errorf("log line %d carries patient data (%s): %s", i+1, strings.Join(leaks, ", "), line)
		}
		lines = append(lines, obj)
	}
	return lines
}

// patientLeaks names the needles found in any field name or string value
// of v.
func patientLeaks(v any, needles []string) []string {
	var found []string
	check := func(where, s string) {
		for _, n := range needles {
			if strings.Contains(s, n) {
				found = append(found, fmt.Sprintf("%q in %s", n, where))
			}
		}
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				check("a field name", k)
				walk(path+"."+k, e)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case string:
			check(path, x)
		}
	}
	walk("", v)
	return found
}
