package testenv

import (
	"fmt"
	"strings"
	"testing"

	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// reportTB records what CheckJSONLog reports instead of failing the test.
type reportTB struct {
	testing.TB
	reports []string
}

func (r *reportTB) Helper() {}
func (r *reportTB) Errorf(format string, args ...any) {
	r.reports = append(r.reports, fmt.Sprintf(format, args...))
}
func (r *reportTB) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(fatalStop{})
}

func checkJSONLog(log string, patient []string) (reports []string) {
	r := &reportTB{}
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(fatalStop); !ok {
				panic(v)
			}
		}
		reports = r.reports
	}()
	CheckJSONLog(r, log, patient)
	return nil
}

// The check finds a patient value wherever a line puts it, and a line that
// is not one JSON object; a clean log passes.
func TestCheckJSONLog(t *testing.T) {
	patient := []string{"P12345678", PatientMarker}
	const head = `{"time":"2026-12-04T07:00:00Z","level":"INFO",`
	clean := head + `"msg":"message quarantined","reason":"bad_json","messageId":"m-1","took":12345678}` + "\n"
	if r := checkJSONLog(clean+clean, patient); len(r) != 0 {
		t.Fatalf("clean log flagged: %v", r)
	}
	for _, bad := range []string{
		head + `"msg":"insert failed","error":"duplicate entry 'P12345678' for key"}`,
		head + `"msg":"x","nested":{"list":[1,"notes: ` + PatientMarker + `"]}}`,
		head + `"msg":"x","` + PatientMarker + `":true}`,
		`{"level":"INFO","msg":"no time"}`,
		`level=INFO msg="text, not JSON"`,
		head + `"msg":"two"}` + head + `"msg":"objects"}`,
	} {
		if r := checkJSONLog(clean+bad+"\n"+clean, patient); len(r) != 1 || !strings.Contains(r[0], "line 2") {
			t.Errorf("want one report on line 2 for %s, got %v", bad, r)
		}
	}
}

func TestPatientValues(t *testing.T) {
	msgs := []syncevent.OutMessage{
		{Body: []byte(`{"patientData":{"patientId":"CL03-123456","notes":"Follow-up in two weeks"}}`)},
		{Body: []byte(`{"patientData":{"patientId":1234567,"notes":"ok"}}`)}, // too likely by chance
		{Body: []byte(`{"patientData":{"patientId":"CL03-123456"}}`)},
		{Body: []byte(`patient P-1 visited`)},
	}
	got := PatientValues(msgs)
	if strings.Join(got, "|") != "CL03-123456|Follow-up in two weeks" {
		t.Fatalf("PatientValues = %q", got)
	}
}
