package contract

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"go.temporal.io/sdk/converter"
)

func TestDeliveryBodyReadableJSONAndExact(t *testing.T) {
	for _, body := range []string{
		`{"patientData":{"patientId":"P-1","notes":"x"}}`, // compact object: embedded
		`[1,2]`,
		"{\n  \"pretty\": true\n}", // would be compacted: base64
		`{"a":"<b>"}`,              // would be HTML-escaped: base64
		`"just a string"`,          // a JSON string: base64, never ambiguous
		"not json",
		"\xff\xfe",
		"",
	} {
		d := Delivery{MessageID: "m", ReceiptHandle: "h", Tag: "t", Body: []byte(body), ConsumedTimes: 2, NextConsumeTime: 9}
		p, err := converter.GetDefaultDataConverter().ToPayload(d)
		if err != nil {
			t.Fatal(err)
		}
		wire := string(p.Data)
		if body == `{"patientData":{"patientId":"P-1","notes":"x"}}` && !strings.Contains(wire, `"Body":{"patientData"`) {
			t.Fatalf("compact JSON body not readable: %s", wire)
		}
		var back Delivery
		if err := converter.GetDefaultDataConverter().FromPayload(p, &back); err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if string(back.Body) != body || back.MessageID != "m" || back.ConsumedTimes != 2 || back.NextConsumeTime != 9 || back.Tag != "t" {
			t.Fatalf("%q: round trip gave %+v (wire %s)", body, back, wire)
		}
	}
}

// Histories recorded before this form hold the body as base64.
func TestDeliveryReadsOldBase64Form(t *testing.T) {
	body := `{"patientData":{"patientId":"P-1"}}`
	old := `{"MessageID":"m","ReceiptHandle":"h","Tag":"t","Body":"` + base64.StdEncoding.EncodeToString([]byte(body)) + `","ConsumedTimes":1,"NextConsumeTime":5}`
	var d Delivery
	if err := json.Unmarshal([]byte(old), &d); err != nil {
		t.Fatal(err)
	}
	if string(d.Body) != body || d.ReceiptHandle != "h" {
		t.Fatalf("old form: %+v", d)
	}
	var in RecordInput
	if err := json.Unmarshal([]byte(`{"Key":"k","Initial":[`+old+`]}`), &in); err != nil || string(in.Initial[0].Body) != body {
		t.Fatalf("nested: %v %+v", err, in)
	}
}
