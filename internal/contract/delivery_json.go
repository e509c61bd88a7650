package contract

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Delivery's JSON form carries Body as the JSON it is when that can be
// done without changing a byte, and as base64 (encoding/json's []byte
// form) otherwise.
//
// Why: the decoded payloads are what an operator reads in the Web UI
// through the codec server; a base64 body hides the record behind one more
// tool. Why here and not in the codec server: the codec must return
// exactly the payload the SDK wrote, and a rewrite there would show the UI
// something no worker reads. Why it is safe for running executions:
// UnmarshalJSON takes both forms, so signals and inputs in existing
// histories (base64 strings) decode to the same Delivery, and replay only
// compares commands, not payload bytes (workflows/replay_test.go).
//
// "Without changing a byte" is the condition because the body is hashed
// for dedup and conflict detection: encoding/json compacts and
// HTML-escapes what a MarshalJSON returns, so only a body already in that
// form (and valid UTF-8) is embedded; a JSON object or array only, so a
// JSON string body can never be mistaken for base64 on the way back.
type deliveryJSON struct {
	MessageID       string
	ReceiptHandle   string
	Tag             string
	Body            json.RawMessage
	ConsumedTimes   int64
	NextConsumeTime int64
}

// MarshalJSON implements json.Marshaler.
func (d Delivery) MarshalJSON() ([]byte, error) {
	out := deliveryJSON{
		MessageID: d.MessageID, ReceiptHandle: d.ReceiptHandle, Tag: d.Tag,
		ConsumedTimes: d.ConsumedTimes, NextConsumeTime: d.NextConsumeTime,
	}
	switch {
	case d.Body == nil:
		out.Body = json.RawMessage("null")
	case embeddable(d.Body):
		out.Body = d.Body
	default:
		b, err := json.Marshal(d.Body) // base64 string
		if err != nil {
			return nil, err
		}
		out.Body = b
	}
	return json.Marshal(out)
}

// UnmarshalJSON implements json.Unmarshaler; it accepts both forms.
func (d *Delivery) UnmarshalJSON(b []byte) error {
	var in deliveryJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*d = Delivery{
		MessageID: in.MessageID, ReceiptHandle: in.ReceiptHandle, Tag: in.Tag,
		ConsumedTimes: in.ConsumedTimes, NextConsumeTime: in.NextConsumeTime,
	}
	raw := bytes.TrimSpace(in.Body)
	switch {
	case len(raw) == 0 || string(raw) == "null":
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("delivery body: %w", err)
		}
		body, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return fmt.Errorf("delivery body: not base64: %w", err)
		}
		d.Body = body
	case raw[0] == '{' || raw[0] == '[':
		d.Body = append([]byte(nil), raw...)
	default:
		return fmt.Errorf("delivery body: want an object, array or base64 string")
	}
	return nil
}

// embeddable reports whether body is a JSON object or array that
// encoding/json would emit unchanged (compact, HTML-escaped, valid UTF-8).
func embeddable(body []byte) bool {
	if len(body) == 0 || (body[0] != '{' && body[0] != '[') || !utf8.Valid(body) {
		return false
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil { // also validates
		return false
	}
	if !bytes.Equal(compact.Bytes(), body) {
		return false
	}
	var escaped bytes.Buffer
	json.HTMLEscape(&escaped, body)
	return bytes.Equal(escaped.Bytes(), body)
}
