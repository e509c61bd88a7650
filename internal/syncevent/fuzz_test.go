package syncevent

import (
	"bytes"
	"errors"
	"testing"
)

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
