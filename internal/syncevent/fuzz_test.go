package syncevent

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// Longer runs: go test -fuzz=FuzzParse -fuzztime=60s ./internal/syncevent
// (plain go test runs the seeds and the saved corpus in testdata/fuzz).

func unmarshalNumbers(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the value")
	}
	return nil
}

func FuzzParse(f *testing.F) {
	seeds := []struct{ key, body string }{
		{"k", `{"patientData":{"patientId":"P1","notes":"n"},"deviceTimestamp":1740989730123}`},
		{"k", `{"patientData":{"patientId":4711},"deviceTimestamp":"2025-03-03T10:15:30.123+02:00","x":[1,{"b":null,"a":"\u00e9\ud83e\ude7a"}]}`},
		{"k", `{"patientData":{"patientId":"P1","notes":"\u0000\"\\/"},"deviceTimestamp":"1740989730123"}`},
		{"k", `{"patientData":{"patientId":"P1"},"deviceTimestamp":"2025-03-03 08:15:30z"}`},
		{"k", `{"patientData":{"patientId":"P1"},"deviceTimestamp":"2025-03-03T08:15:30,5-0130"}`},
		{"k", `{"patientData":{"patientId":"\ud800"},"deviceTimestamp":0}`},
		{"", `{}`},
		{"k ", `[]`},
		{"k", `{"a":1,"a":2}`},
		{"k", "{\"patientData\":{\"patientId\":\"P\xff\"},\"deviceTimestamp\":0}"},
		{"k", `{"patientData":{"patientId":-0},"deviceTimestamp":-62135596800000}`},
		{"k", `{"patientData":{"patientId":"P1","notes":"\ufffd"},"deviceTimestamp":0}`},
		{"k", `{"patientData":{"patientId":"P1","notes":"\ud83e\ude7a\udc00"},"deviceTimestamp":0}`},
		{"k", "\ufeff{}"},
		{"k", `{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`},
		{"k", `{"patientData":{"patientId":1e5,"\u0070atientId":"x"},"deviceTimestamp":1.0E+2}`},
		{"k", `{"patientData":{"patientId":"P1"},"deviceTimestamp":0} x`},
	}
	for _, s := range seeds {
		f.Add(s.key, []byte(s.body))
	}
	// Generated messages are realistic seeds of every kind.
	for _, m := range Generate(GenOptions{Count: 40, DistinctKeys: 20, ChangedRate: 0.5, BadRate: 0.3, Seed: 7}) {
		f.Add(m.Key, m.Body)
	}
	f.Fuzz(func(t *testing.T, key string, body []byte) {
		ev, err := Parse(key, "msg-1", body)
		if err == nil {
			// encoding/json is the reference: what Parse accepts it
			// accepts too, and reads the canonical payload as the same
			// value as the body.
			var a, b any
			if err := unmarshalNumbers(body, &a); err != nil {
				t.Fatalf("Parse accepted a body encoding/json refuses: %v", err)
			}
			if err := unmarshalNumbers(ev.Payload, &b); err != nil {
				t.Fatalf("canonical payload %q is not JSON: %v", ev.Payload, err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("canonical payload %q differs from the body %q", ev.Payload, body)
			}
		}
		if err != nil {
			var ie *InvalidError
			if !errors.As(err, &ie) || ie.Reason == "" {
				t.Fatalf("error %v (%T) is not an *InvalidError with a reason", err, err)
			}
			return
		}
		if ev.Key != key || ev.PatientID == "" || ev.DeviceTime.IsZero() || len(ev.Hash) != 64 {
			t.Fatalf("valid event incomplete: %+v", ev)
		}
		// The canonical payload is itself a valid body describing the same
		// event, and canonicalising it again changes nothing.
		again, err := Parse(key, "msg-2", ev.Payload)
		if err != nil {
			t.Fatalf("re-parse of canonical payload %q: %v", ev.Payload, err)
		}
		if again.Hash != ev.Hash || !bytes.Equal(again.Payload, ev.Payload) {
			t.Fatalf("canonical form not stable:\n%q\n%q", ev.Payload, again.Payload)
		}
		if again.PatientID != ev.PatientID || again.Notes != ev.Notes || !again.DeviceTime.Equal(ev.DeviceTime) {
			t.Fatalf("re-parse changed fields: %+v vs %+v", again, ev)
		}
	})
}
