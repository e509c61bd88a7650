package workerapp

import (
	"bytes"
	"encoding/json"
	"fmt"
	stdlog "log"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/syncbridge/syncbridge/internal/logging"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// patientMarker stands for a patient value in the hand-made messages of
// TestJSONLogsCarryNoPatientData: in a log, it can only have come from a
// message body.
const patientMarker = "PATIENT-MARKER-4d1e"

// A drain of every kind of message (clean, republished, changed, bad
// input, keyless, delivered twice) through a worker logging JSON at debug,
// the most it ever logs: every line is one JSON object with time, level and
// msg, the SDK's own lines among them, and no field (name or value) holds a
// patient value: neither the marker nor a patient ID or note of the
// generated records.
func TestJSONLogsCarryNoPatientData(t *testing.T) {
	p := newPipe(t, mqemu.Config{InvisibleTime: 2 * time.Minute, Faults: mqemu.Faults{DuplicateRate: 0.3}, Seed: 21}, nil)
	msgs := generate(syncevent.GenOptions{Count: 60, DistinctKeys: 40, ChangedRate: 0.5, BadRate: 0.25, Seed: 23, KeyPrefix: "jsonlog-"})
	msgs = append(msgs, markedMessages("jsonlog-marked-")...)
	needles := append(patientValues(msgs), patientMarker)
	ids := p.publish(msgs)

	// As worker/main.go does, the process logger is slog's default too, so
	// a line logged through the default is scanned as well.
	var out lockedBuffer
	log := logging.New(&out, logging.JSON, slog.LevelDebug)
	prev, prevOut, prevFlags := slog.Default(), stdlog.Writer(), stdlog.Flags()
	slog.SetDefault(log)
	t.Cleanup(func() {
		// SetDefault also redirected the log package; restoring slog's
		// own default does not undo that.
		stdlog.SetOutput(prevOut)
		stdlog.SetFlags(prevFlags)
		slog.SetDefault(prev)
	})
	w := p.worker(Options{Logger: log})
	p.waitDrained(len(msgs), 3*time.Minute)
	p.verify(expect(t, msgs, ids))
	if err := w.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}

	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	seen := map[string]int{} // what the log must show for the scan to mean anything
	for i, line := range lines {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("line %d is not one JSON object (%v): %s", i+1, err, line)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := obj[k].(string); !ok {
				t.Errorf("line %d has no %s: %s", i+1, k, line)
			}
		}
		if leaks := patientLeaks(obj, needles); len(leaks) > 0 {
			t.Errorf("line %d carries patient data (%s): %s", i+1, strings.Join(leaks, ", "), line)
		}
		msg, _ := obj["msg"].(string)
		switch {
		case msg == "worker running":
			seen["worker running"]++
		case msg == "message quarantined":
			seen["quarantine"]++
		}
		if _, ok := obj["WorkflowID"]; ok {
			seen["SDK line with WorkflowID"]++
		}
		if _, ok := obj["component"]; ok {
			seen["component"]++
		}
	}
	for _, want := range []string{"worker running", "quarantine", "SDK line with WorkflowID", "component"} {
		if seen[want] == 0 {
			t.Errorf("no %s line among %d: the scan covered less than a drain logs", want, len(lines))
		}
	}
	t.Logf("%d JSON lines scanned for %d patient values: %v", len(lines), len(needles), seen)
}

// The scan finds a patient value wherever a line puts it.
func TestPatientLeaksFindsValuesAndKeys(t *testing.T) {
	for _, line := range []string{
		`{"msg":"insert failed","error":"duplicate entry 'P12345678' for key"}`,
		`{"msg":"x","nested":{"list":[1,"notes: PATIENT-MARKER-4d1e"]}}`,
		`{"msg":"x","PATIENT-MARKER-4d1e":true}`,
	} {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatal(err)
		}
		if len(patientLeaks(obj, []string{"P12345678", patientMarker})) == 0 {
			t.Errorf("leak not found in %s", line)
		}
	}
	var obj map[string]any
	_ = json.Unmarshal([]byte(`{"msg":"message quarantined","reason":"bad_json","messageId":"m-1"}`), &obj)
	if l := patientLeaks(obj, []string{"P12345678", patientMarker}); len(l) > 0 {
		t.Errorf("clean line flagged: %v", l)
	}
}

// markedMessages carry patientMarker in patient fields, through every
// path: stored, conflict, and quarantined for several reasons, keyless
// included.
func markedMessages(prefix string) []syncevent.OutMessage {
	bad := func(reason string) string { return syncevent.KindBadPrefix + reason }
	m := func(key, kind, body string) syncevent.OutMessage {
		return syncevent.OutMessage{Key: key, Tag: syncevent.Tag, Body: []byte(body), Kind: kind}
	}
	pid := `"` + patientMarker + `"`
	return []syncevent.OutMessage{
		m(prefix+"stored", syncevent.KindNew, recBody(pid, `"seen by `+patientMarker+`"`, okTS)),
		m(prefix+"stored", syncevent.KindChanged, recBody(pid, `"amended: `+patientMarker+`"`, okTS)),
		m(prefix+"notjson", bad(syncevent.ReasonBadJSON), "patient "+patientMarker+" visited"),
		m(prefix+"dupkeys", bad(syncevent.ReasonBadJSON), `{"patientData":{"patientId":`+pid+`,"patientId":"P-2"},"deviceTimestamp":`+okTS+`}`),
		m(prefix+"longpid", bad(syncevent.ReasonFieldTooLong), recBody(`"`+strings.Repeat(patientMarker, 4)+`"`, `"n"`, okTS)),
		m(prefix+"badts", bad(syncevent.ReasonBadTimestamp), recBody(pid, `"`+patientMarker+`"`, `"31/02/2025 10:00"`)),
		m(prefix+"nopid", bad(syncevent.ReasonMissingPatientID), `{"patientData":{"notes":"`+patientMarker+`"},"deviceTimestamp":`+okTS+`}`),
		m("", bad(syncevent.ReasonMissingKey), recBody(pid, `"`+patientMarker+`"`, okTS)),
	}
}

// patientValues are the patient IDs and notes of msgs that cannot occur in
// a log by chance: at least 8 characters with a letter (the generator's
// numeric IDs would match timestamps and durations).
func patientValues(msgs []syncevent.OutMessage) []string {
	set := map[string]bool{}
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
			s, ok := v.(string)
			if ok && len(s) >= 8 && strings.IndexFunc(s, unicode.IsLetter) >= 0 {
				set[s] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// patientLeaks names the needles found in any key or string value of v.
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

// lockedBuffer is an io.Writer the worker's goroutines share with the
// test's read.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
