package workerapp

import (
	"bytes"
	stdlog "log"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/logging"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/testenv"
)

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
	patient := append(testenv.PatientValues(msgs), testenv.PatientMarker)
	ids := p.publish(msgs)

	// As worker/main.go does, the process logger is slog's default too, so
	// a line logged through the default is checked as well.
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

	lines := testenv.CheckJSONLog(t, out.String(), patient)
	seen := map[string]int{} // what the log must show for the check to mean anything
	for _, obj := range lines {
		switch obj["msg"] {
		case "worker running":
			seen["worker running"]++
		case "message quarantined":
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
			t.Errorf("no %s line among %d: the check covered less than a drain logs", want, len(lines))
		}
	}
	t.Logf("%d JSON lines checked for %d patient values: %v", len(lines), len(patient), seen)
}

// markedMessages carry testenv.PatientMarker in patient fields, through
// every path: stored, conflict, and quarantined for several reasons,
// keyless included.
func markedMessages(prefix string) []syncevent.OutMessage {
	const marker = testenv.PatientMarker
	bad := func(reason string) string { return syncevent.KindBadPrefix + reason }
	m := func(key, kind, body string) syncevent.OutMessage {
		return syncevent.OutMessage{Key: key, Tag: syncevent.Tag, Body: []byte(body), Kind: kind}
	}
	pid := `"` + marker + `"`
	return []syncevent.OutMessage{
		m(prefix+"stored", syncevent.KindNew, recBody(pid, `"seen by `+marker+`"`, okTS)),
		m(prefix+"stored", syncevent.KindChanged, recBody(pid, `"amended: `+marker+`"`, okTS)),
		m(prefix+"notjson", bad(syncevent.ReasonBadJSON), "patient "+marker+" visited"),
		m(prefix+"dupkeys", bad(syncevent.ReasonBadJSON), `{"patientData":{"patientId":`+pid+`,"patientId":"P-2"},"deviceTimestamp":`+okTS+`}`),
		m(prefix+"longpid", bad(syncevent.ReasonFieldTooLong), recBody(`"`+strings.Repeat(marker, 4)+`"`, `"n"`, okTS)),
		m(prefix+"badts", bad(syncevent.ReasonBadTimestamp), recBody(pid, `"`+marker+`"`, `"31/02/2025 10:00"`)),
		m(prefix+"nopid", bad(syncevent.ReasonMissingPatientID), `{"patientData":{"notes":"`+marker+`"},"deviceTimestamp":`+okTS+`}`),
		m("", bad(syncevent.ReasonMissingKey), recBody(pid, `"`+marker+`"`, okTS)),
	}
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
