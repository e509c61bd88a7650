package syncevent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Patient values used in the bodies below. Error messages must never
// contain them.
const (
	secretPID   = "PAT-SECRET-4711"
	secretNotes = "diagnosis-secret-xyz"
)

func TestParseValid(t *testing.T) {
	t.Parallel()
	want := time.Date(2025, 3, 3, 8, 15, 30, 123_000_000, time.UTC)
	tests := []struct {
		name      string
		body      string
		patientID string
		notes     string
		at        time.Time
	}{
		{"epoch ms number", `{"patientData":{"patientId":"P1","notes":"n"},"deviceTimestamp":1740989730123}`, "P1", "n", want},
		{"epoch ms numeric string", `{"patientData":{"patientId":"P1","notes":"n"},"deviceTimestamp":"1740989730123"}`, "P1", "n", want},
		{"rfc3339 Z with ms", `{"patientData":{"patientId":"P1"},"deviceTimestamp":"2025-03-03T08:15:30.123Z"}`, "P1", "", want},
		{"rfc3339 offset", `{"patientData":{"patientId":"P1"},"deviceTimestamp":"2025-03-03T10:15:30.123+02:00"}`, "P1", "", want},
		{"basic offset", `{"patientData":{"patientId":"P1"},"deviceTimestamp":"2025-03-03T03:15:30.123-0500"}`, "P1", "", want},
		{"hour offset", `{"patientData":{"patientId":"P1"},"deviceTimestamp":"2025-03-03T09:15:30.123+01"}`, "P1", "", want},
		{"no zone is UTC", `{"patientData":{"patientId":"P1"},"deviceTimestamp":"2025-03-03T08:15:30.123"}`, "P1", "", want},
		{"space separator lower z", `{"patientData":{"patientId":"P1"},"deviceTimestamp":"2025-03-03 08:15:30.123z"}`, "P1", "", want},
		{"no fraction", `{"patientData":{"patientId":"P1"},"deviceTimestamp":"2025-03-03T08:15:30Z"}`, "P1", "", want.Truncate(time.Second)},
		{"nanoseconds truncated to ms", `{"patientData":{"patientId":"P1"},"deviceTimestamp":"2025-03-03T08:15:30.123999999Z"}`, "P1", "", want},
		{"numeric patient id keeps text", `{"patientData":{"patientId":4711,"notes":null},"deviceTimestamp":1740989730123}`, "4711", "", want},
		{"notes with unicode and newline", `{"patientData":{"patientId":"P1","notes":"Zoë\nMüller \u00e9 — 🩺"},"deviceTimestamp":1740989730123}`, "P1", "Zoë\nMüller é — 🩺", want},
		{"extra fields tolerated", `{"patientData":{"patientId":"P1","ward":"B"},"deviceTimestamp":1740989730123,"deviceId":"tab-7","v":[1,2.5,{"x":null}]}`, "P1", "", want},
		{"pre-1970 device clock", `{"patientData":{"patientId":"P1"},"deviceTimestamp":-1000}`, "P1", "", time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev, err := Parse("clinic01-dev1-000001", "0A1B2C3D", []byte(tc.body))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if ev.Key != "clinic01-dev1-000001" || ev.MessageID != "0A1B2C3D" {
				t.Errorf("key/id = %q/%q", ev.Key, ev.MessageID)
			}
			if ev.PatientID != tc.patientID || ev.Notes != tc.notes {
				t.Errorf("patient fields = %q/%q, want %q/%q", ev.PatientID, ev.Notes, tc.patientID, tc.notes)
			}
			if !ev.DeviceTime.Equal(tc.at) || ev.DeviceTime.Location() != time.UTC {
				t.Errorf("DeviceTime = %v, want %v in UTC", ev.DeviceTime, tc.at)
			}
			sum := sha256.Sum256(ev.Payload)
			if ev.Hash != hex.EncodeToString(sum[:]) {
				t.Errorf("Hash is not the SHA-256 of Payload")
			}
		})
	}
}

func TestParseKeepsExtraFieldsInPayload(t *testing.T) {
	t.Parallel()
	body := `{ "zeta": {"b": 1, "a": [true, null, "s"]}, "deviceTimestamp": 5, "patientData": {"patientId": "P1", "notes": "q\"\\\t\u0001</>"}, "alpha": 1.50e3 }`
	ev, err := Parse("k", "", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"alpha":1.50e3,"deviceTimestamp":5,"patientData":{"notes":"q\"\\\t\u0001</>","patientId":"P1"},"zeta":{"a":[true,null,"s"],"b":1}}`
	if string(ev.Payload) != want {
		t.Errorf("Payload =\n%s\nwant\n%s", ev.Payload, want)
	}
}

func TestParseCanonicalPayloadStable(t *testing.T) {
	t.Parallel()
	variants := []string{
		`{"patientData":{"patientId":"P1","notes":"héllo"},"deviceTimestamp":"2025-03-03T08:15:30Z","x":{"b":2,"a":1}}`,
		`{"x":{"a":1,"b":2},"deviceTimestamp":"2025-03-03T08:15:30Z","patientData":{"notes":"héllo","patientId":"P1"}}`,
		"{\n  \"deviceTimestamp\" : \"2025-03-03T08:15:30Z\",\n  \"patientData\" : { \"notes\" : \"h\\u00e9llo\", \"patientId\" : \"\\u0050\\u0031\" },\n  \"x\" : { \"b\" : 2 , \"a\" : 1 }\n}\n",
	}
	var first Event
	for i, v := range variants {
		ev, err := Parse("k", "", []byte(v))
		if err != nil {
			t.Fatalf("variant %d: %v", i, err)
		}
		if i == 0 {
			first = ev
			continue
		}
		if !bytes.Equal(ev.Payload, first.Payload) || ev.Hash != first.Hash {
			t.Errorf("variant %d payload %s differs from %s", i, ev.Payload, first.Payload)
		}
	}
	// A real content change must change the hash.
	ev, err := Parse("k", "", []byte(`{"patientData":{"patientId":"P1","notes":"hello"},"deviceTimestamp":"2025-03-03T08:15:30Z","x":{"b":2,"a":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Hash == first.Hash {
		t.Error("changed notes kept the same hash")
	}
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	ok := `{"patientData":{"patientId":"` + secretPID + `","notes":"` + secretNotes + `"},"deviceTimestamp":1740989730123}`
	withPD := func(pd string) string {
		return `{"patientData":` + pd + `,"deviceTimestamp":1740989730123}`
	}
	withTS := func(ts string) string {
		return `{"patientData":{"patientId":"` + secretPID + `","notes":"` + secretNotes + `"},"deviceTimestamp":` + ts + `}`
	}
	tests := []struct {
		name, key, msgID, body, reason string
	}{
		{"empty key", "", "m", ok, ReasonMissingKey},
		{"blank key", "  \t", "m", ok, ReasonMissingKey},
		{"key with trailing space", "rec-1 ", "m", ok, ReasonBadKey},
		{"key with control char", "rec\x00-1", "m", ok, ReasonBadKey},
		{"key invalid utf8", "rec-\xff", "m", ok, ReasonInvalidUTF8},
		{"key too long", strings.Repeat("k", MaxKeyChars+1), "m", ok, ReasonFieldTooLong},
		{"message id invalid utf8", "k", "\xfe", ok, ReasonInvalidUTF8},
		{"message id too long", "k", strings.Repeat("m", MaxMessageIDChars+1), ok, ReasonFieldTooLong},
		{"empty body", "k", "m", ``, ReasonBadJSON},
		{"truncated body", "k", "m", ok[:len(ok)-1], ReasonBadJSON},
		{"not json", "k", "m", `patient ` + secretPID, ReasonBadJSON},
		{"json array", "k", "m", `[` + ok + `]`, ReasonBadJSON},
		{"json string", "k", "m", `"` + secretPID + `"`, ReasonBadJSON},
		{"trailing data", "k", "m", ok + ` {}`, ReasonBadJSON},
		{"duplicate top field", "k", "m", `{"deviceTimestamp":1,` + ok[1:], ReasonBadJSON},
		{"duplicate nested field", "k", "m", withPD(`{"patientId":"a","patientId":"` + secretPID + `"}`), ReasonBadJSON},
		{"duplicate field named by a value", "k", "m", `{"byPatient":{"` + secretPID + `":1,"` + secretPID + `":2},` + ok[1:], ReasonBadJSON},
		{"too deep", "k", "m", `{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `,` + ok[1:], ReasonBadJSON},
		{"body invalid utf8", "k", "m", withPD(`{"patientId":"` + secretPID + `","notes":"caf` + "\xe9" + `"}`), ReasonInvalidUTF8},
		{"no patientData", "k", "m", `{"deviceTimestamp":1740989730123}`, ReasonMissingPatientID},
		{"null patientData", "k", "m", withPD(`null`), ReasonMissingPatientID},
		{"patientData not object", "k", "m", withPD(`"` + secretPID + `"`), ReasonBadField},
		{"missing patientId", "k", "m", withPD(`{"notes":"` + secretNotes + `"}`), ReasonMissingPatientID},
		{"null patientId", "k", "m", withPD(`{"patientId":null}`), ReasonMissingPatientID},
		{"empty patientId", "k", "m", withPD(`{"patientId":""}`), ReasonMissingPatientID},
		{"blank patientId", "k", "m", withPD(`{"patientId":"   "}`), ReasonMissingPatientID},
		{"patientId wrong case is missing", "k", "m", withPD(`{"PatientID":"` + secretPID + `"}`), ReasonMissingPatientID},
		{"patientId bool", "k", "m", withPD(`{"patientId":true}`), ReasonBadField},
		{"patientId object", "k", "m", withPD(`{"patientId":{"v":"` + secretPID + `"}}`), ReasonBadField},
		{"patientId fraction", "k", "m", withPD(`{"patientId":47.11}`), ReasonBadField},
		{"patientId control char", "k", "m", withPD(`{"patientId":"` + secretPID + `\n"}`), ReasonBadField},
		{"patientId too long", "k", "m", withPD(`{"patientId":"` + strings.Repeat("é", MaxPatientIDChars+1) + `"}`), ReasonFieldTooLong},
		{"notes not string", "k", "m", withPD(`{"patientId":"` + secretPID + `","notes":["` + secretNotes + `"]}`), ReasonBadField},
		{"notes too long", "k", "m", withPD(`{"patientId":"` + secretPID + `","notes":"` + strings.Repeat("n", MaxNotesBytes+1) + `"}`), ReasonFieldTooLong},
		{"body too long", "k", "m", `{"x":"` + strings.Repeat("b", DefaultMaxBodyBytes) + `"}`, ReasonBodyTooLarge},
		// No silent alteration: U+FFFD is what invalid bytes become through
		// the HTTP API, and encoding/json would turn a lone surrogate into it.
		{"notes with U+FFFD", "k", "m", withPD(`{"patientId":"` + secretPID + `","notes":"caf` + "\uFFFD" + `"}`), ReasonInvalidUTF8},
		{"notes with escaped U+FFFD", "k", "m", withPD(`{"patientId":"` + secretPID + `","notes":"caf\ufffd"}`), ReasonInvalidUTF8},
		{"patientId with U+FFFD", "k", "m", withPD(`{"patientId":"` + "P\uFFFD1" + `"}`), ReasonInvalidUTF8},
		{"extra field with U+FFFD", "k", "m", `{"x":"` + "\uFFFD" + `",` + ok[1:], ReasonInvalidUTF8},
		{"key with U+FFFD", "rec-\uFFFD", "m", ok, ReasonInvalidUTF8},
		{"lone high surrogate", "k", "m", withPD(`{"patientId":"\ud800"}`), ReasonInvalidUTF8},
		{"lone low surrogate", "k", "m", withPD(`{"patientId":"a\udc00b"}`), ReasonInvalidUTF8},
		{"high surrogate then letter", "k", "m", withPD(`{"patientId":"\ud800\u0041"}`), ReasonInvalidUTF8},
		{"lone surrogate in a field name", "k", "m", `{"\udbff":1,` + ok[1:], ReasonInvalidUTF8},
		{"byte order mark", "k", "m", "\uFEFF" + ok, ReasonBadJSON},
		{"raw NUL in body", "k", "m", ok + "\x00", ReasonBadJSON},
		{"raw control char in string", "k", "m", withPD(`{"patientId":"P` + "\x01" + `"}`), ReasonBadJSON},
		{"top-level null", "k", "m", `null`, ReasonBadJSON},
		{"leading zero", "k", "m", withTS(`01740989730123`), ReasonBadJSON},
		{"bare minus", "k", "m", withTS(`-`), ReasonBadJSON},
		{"fraction without digits", "k", "m", withTS(`1.`), ReasonBadJSON},
		{"exponent without digits", "k", "m", withTS(`1e+`), ReasonBadJSON},
		{"bad escape", "k", "m", withPD(`{"patientId":"\x41"}`), ReasonBadJSON},
		{"short unicode escape", "k", "m", withPD(`{"patientId":"\u12"}`), ReasonBadJSON},
		{"single quotes", "k", "m", `{'patientData':1}`, ReasonBadJSON},
		{"trailing comma", "k", "m", `{"a":1,}`, ReasonBadJSON},
		{"huge array", "k", "m", `{"x":[` + strings.Repeat("0,", DefaultMaxContainer) + `0],` + ok[1:], ReasonBadJSON},
		{"huge object", "k", "m", `{"x":{` + manyFields(DefaultMaxContainer+1) + `},` + ok[1:], ReasonBadJSON},
		{"too many values", "k", "m", `{"x":[` + strings.Repeat("[0,0,0,0,0,0,0,0,0],", DefaultMaxValues/10) + `0],` + ok[1:], ReasonBadJSON},
		{"missing timestamp", "k", "m", `{"patientData":{"patientId":"` + secretPID + `"}}`, ReasonBadTimestamp},
		{"null timestamp", "k", "m", withTS(`null`), ReasonBadTimestamp},
		{"timestamp bool", "k", "m", withTS(`true`), ReasonBadTimestamp},
		{"timestamp fraction ms", "k", "m", withTS(`1740989730123.5`), ReasonBadTimestamp},
		{"timestamp words", "k", "m", withTS(`"yesterday"`), ReasonBadTimestamp},
		{"timestamp date only", "k", "m", withTS(`"2025-03-03"`), ReasonBadTimestamp},
		{"timestamp month 13", "k", "m", withTS(`"2025-13-03T08:00:00Z"`), ReasonBadTimestamp},
		{"timestamp empty string", "k", "m", withTS(`""`), ReasonBadTimestamp},
		{"timestamp overflow", "k", "m", withTS(`99999999999999999999`), ReasonBadTimestamp},
		{"timestamp past year 9999", "k", "m", withTS(`253402300800000`), ReasonBadTimestamp},
		{"timestamp before year 1000", "k", "m", withTS(`"0999-12-31T23:59:59Z"`), ReasonBadTimestamp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev, err := Parse(tc.key, tc.msgID, []byte(tc.body))
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("Parse error = %v (%T), want *InvalidError; event %+v", err, err, ev)
			}
			if ie.Reason != tc.reason {
				t.Errorf("Reason = %q, want %q (%v)", ie.Reason, tc.reason, err)
			}
			if ie.Detail == "" {
				t.Error("empty Detail")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.reason) {
				t.Errorf("message %q lacks the reason", msg)
			}
			for _, secret := range []string{secretPID, secretNotes, "caf"} {
				if strings.Contains(msg, secret) {
					t.Errorf("message %q leaks a patient value", msg)
				}
			}
		})
	}
}

func manyFields(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"f%d":0`, i)
	}
	return b.String()
}

func TestInvalidErrorMessage(t *testing.T) {
	t.Parallel()
	e := &InvalidError{Reason: ReasonBadTimestamp, Detail: "deviceTimestamp: unparseable"}
	if got := e.Error(); got != "invalid sync event: bad_timestamp: deviceTimestamp: unparseable" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&InvalidError{Reason: ReasonBadJSON}).Error(); got != "invalid sync event: bad_json" {
		t.Errorf("Error() without detail = %q", got)
	}
}

func TestParseAcceptsLimits(t *testing.T) {
	t.Parallel()
	pid := strings.Repeat("é", MaxPatientIDChars) // 64 characters, 128 bytes
	notes := strings.Repeat("n", MaxNotesBytes)
	key := strings.Repeat("ü", MaxKeyChars)
	body := `{"patientData":{"patientId":"` + pid + `","notes":"` + notes + `"},"deviceTimestamp":"9999-12-31T23:59:59.999Z"}`
	ev, err := Parse(key, strings.Repeat("m", MaxMessageIDChars), []byte(body))
	if err != nil {
		t.Fatalf("values at the limits rejected: %v", err)
	}
	if ev.PatientID != pid || len(ev.Notes) != MaxNotesBytes || ev.Key != key {
		t.Error("values at the limits altered")
	}
}

func TestDeviceTimeWindow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	lim := Limits{
		DeviceTimeNotBefore: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		DeviceTimeMaxAhead:  24 * time.Hour,
		Now:                 func() time.Time { return now },
	}
	for _, tc := range []struct {
		ts string
		ok bool
	}{
		{`"2026-12-01T11:00:00Z"`, true},
		{`"2000-01-01T00:00:00Z"`, true},
		{`"1999-12-31T23:59:59Z"`, false},
		{`0`, false}, // 1970: a device clock never set
		{`"2026-12-02T11:59:59Z"`, true},
		{`"2026-12-02T12:00:01Z"`, false},
	} {
		body := `{"patientData":{"patientId":"P-1"},"deviceTimestamp":` + tc.ts + `}`
		_, err := lim.Parse("k", "m", []byte(body))
		var ie *InvalidError
		if tc.ok && err != nil || !tc.ok && (!errors.As(err, &ie) || ie.Reason != ReasonBadTimestamp) {
			t.Errorf("deviceTimestamp %s: err = %v, want ok %t", tc.ts, err, tc.ok)
		}
		// The default window accepts all of them.
		if _, err := Parse("k", "m", []byte(body)); err != nil {
			t.Errorf("default limits refused %s: %v", tc.ts, err)
		}
	}
}
