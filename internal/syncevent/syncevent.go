// Package syncevent defines the message an edge device publishes when it
// syncs a buffered patient record, and turns a raw RocketMQ message into a
// validated Event.
//
// Everything that can make a message impossible to store is checked here,
// before any database work, so a poison message is quarantined at once
// instead of failing the insert over and over. The limits below mirror the
// columns of the store schema.
//
// Errors never contain patient values: they name the field and the problem
// ("patientData.patientId: missing"), because they end up in logs, workflow
// histories and the quarantine table.
package syncevent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Tag is the RocketMQ tag of sync events.
const Tag = "SyncEvent"

// Limits, matching the store schema (patient_records).
const (
	// MaxKeyChars is the longest MessageKey, in characters (local_record_id varchar(128)).
	MaxKeyChars = 128
	// MaxMessageIDChars is the longest RocketMQ message ID, in characters (message_id varchar(64)).
	MaxMessageIDChars = 64
	// MaxPatientIDChars is the longest patientId, in characters (patient_id varchar(64)).
	MaxPatientIDChars = 64
	// MaxNotesBytes is the longest notes value, in UTF-8 bytes (notes TEXT).
	MaxNotesBytes = 65535
	// DefaultMaxBodyBytes is the default largest accepted body. The body
	// travels to the record workflow inside a Temporal payload, base64
	// encoded (4/3 of its size), and Temporal refuses payloads over 2 MiB:
	// 1 MiB leaves room for the encoding, the other delivery fields and
	// payload encryption. (RocketMQ accepts 4 MiB; the payload column,
	// MEDIUMBLOB, 16 MiB.)
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMaxValues bounds the JSON values (field names included) of a
	// body, and with them the parser's memory: 12 bytes each.
	DefaultMaxValues = 100_000
	// DefaultMaxContainer bounds the elements of one array or the fields of
	// one object.
	DefaultMaxContainer = 10_000
	// DefaultMaxDepth bounds JSON nesting so a hostile body cannot exhaust
	// the stack.
	DefaultMaxDepth = 64
)

// Reasons carried by InvalidError. They are stable, machine-friendly codes:
// the quarantine table and metrics use them as-is.
const (
	ReasonMissingKey       = "missing_key"        // MessageKey empty or blank
	ReasonBadKey           = "bad_key"            // MessageKey has control characters or surrounding spaces
	ReasonBadJSON          = "bad_json"           // body is not one JSON object, has duplicate fields, or exceeds the depth, size or value caps (Limits)
	ReasonMissingPatientID = "missing_patient_id" // patientData or patientData.patientId absent, null or blank
	ReasonBadField         = "bad_field"          // a known field has the wrong type or characters
	ReasonBadTimestamp     = "bad_timestamp"      // deviceTimestamp absent, of the wrong type, unparseable or out of range
	ReasonInvalidUTF8      = "invalid_utf8"       // key, message ID or body is not valid UTF-8
	ReasonFieldTooLong     = "field_too_long"     // a value exceeds its column
	ReasonBodyTooLarge     = "body_too_large"     // body over Limits.MaxBodyBytes
)

// Limits bound what Parse accepts, so that no body can cost the worker
// more than a known amount of memory or fail later, deterministically, at
// Temporal. Zero fields take the defaults.
type Limits struct {
	MaxBodyBytes int // bytes; default DefaultMaxBodyBytes
	MaxValues    int // JSON values in the body; default DefaultMaxValues
	MaxContainer int // elements of an array or fields of an object; default DefaultMaxContainer
	MaxDepth     int // nesting levels; default DefaultMaxDepth
	// DeviceTimeNotBefore refuses older deviceTimestamps (bad_timestamp);
	// zero means year 1000, the oldest DATETIME MySQL supports.
	DeviceTimeNotBefore time.Time
	// DeviceTimeMaxAhead refuses deviceTimestamps further than this in the
	// future of Now (a device clock gone wrong); zero means no such check
	// (up to year 9999).
	DeviceTimeMaxAhead time.Duration
	// Now is the clock for DeviceTimeMaxAhead; nil means time.Now.
	Now func() time.Time
}

func (l Limits) withDefaults() Limits {
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if l.MaxValues <= 0 {
		l.MaxValues = DefaultMaxValues
	}
	if l.MaxContainer <= 0 {
		l.MaxContainer = DefaultMaxContainer
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// Event is a validated sync event, ready to be stored.
type Event struct {
	Key        string    // MessageKey = device-local record ID
	MessageID  string    // RocketMQ message ID (may be empty)
	PatientID  string    // patientData.patientId; a JSON number is kept as its decimal text
	Notes      string    // patientData.notes; empty when absent or null
	DeviceTime time.Time // deviceTimestamp, UTC, truncated to milliseconds
	Payload    []byte    // canonical JSON of the whole body: sorted keys, no insignificant whitespace
	Hash       string    // hex SHA-256 of Payload
}

// InvalidError is bad input that can never succeed: quarantine, don't retry.
type InvalidError struct {
	Reason string // one of the Reason* codes
	Detail string // human detail naming the field, never a patient value
}

func (e *InvalidError) Error() string {
	if e.Detail == "" {
		return "invalid sync event: " + e.Reason
	}
	return "invalid sync event: " + e.Reason + ": " + e.Detail
}

func invalid(reason, format string, args ...any) *InvalidError {
	return &InvalidError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Parse validates a raw message under the default Limits and builds its
// Event. Any error it returns is an *InvalidError: the message will fail the
// same way on every redelivery.
func Parse(key, messageID string, body []byte) (Event, error) {
	return Limits{}.Parse(key, messageID, body)
}

// Parse is the package's Parse under l.
func (l Limits) Parse(key, messageID string, body []byte) (Event, error) {
	l = l.withDefaults()
	if err := checkKey(key); err != nil {
		return Event{}, err
	}
	if !utf8.ValidString(messageID) {
		return Event{}, invalid(ReasonInvalidUTF8, "messageId: not valid UTF-8")
	}
	if n := utf8.RuneCountInString(messageID); n > MaxMessageIDChars {
		return Event{}, invalid(ReasonFieldTooLong, "messageId: %d characters, max %d", n, MaxMessageIDChars)
	}
	if len(body) > l.MaxBodyBytes {
		return Event{}, invalid(ReasonBodyTooLarge, "body: %d bytes, max %d", len(body), l.MaxBodyBytes)
	}
	root, err := decode(body, l)
	if err != nil {
		return Event{}, err
	}
	if root.kind != kindObject {
		return Event{}, invalid(ReasonBadJSON, "body: not a JSON object")
	}

	ev := Event{Key: key, MessageID: messageID}
	if ev.PatientID, ev.Notes, err = patientFields(root); err != nil {
		return Event{}, err
	}
	if ev.DeviceTime, err = deviceTime(root.member("deviceTimestamp")); err != nil {
		return Event{}, err
	}
	if err := l.checkWindow(ev.DeviceTime); err != nil {
		return Event{}, err
	}
	ev.Payload = root.appendCanonical(make([]byte, 0, len(body)))
	sum := sha256.Sum256(ev.Payload)
	ev.Hash = hex.EncodeToString(sum[:])
	return ev, nil
}

// checkWindow applies the configured plausibility window to a device time
// already within the DATETIME range.
func (l Limits) checkWindow(t time.Time) error {
	if !l.DeviceTimeNotBefore.IsZero() && t.Before(l.DeviceTimeNotBefore) {
		return invalid(ReasonBadTimestamp, "deviceTimestamp: before %s", l.DeviceTimeNotBefore.UTC().Format(time.RFC3339))
	}
	if l.DeviceTimeMaxAhead > 0 {
		now := time.Now
		if l.Now != nil {
			now = l.Now
		}
		if t.After(now().Add(l.DeviceTimeMaxAhead)) {
			return invalid(ReasonBadTimestamp, "deviceTimestamp: more than %s in the future", l.DeviceTimeMaxAhead)
		}
	}
	return nil
}

func checkKey(key string) error {
	if strings.TrimSpace(key) == "" {
		return invalid(ReasonMissingKey, "key: missing")
	}
	if !utf8.ValidString(key) {
		return invalid(ReasonInvalidUTF8, "key: not valid UTF-8")
	}
	// U+FFFD is what invalid bytes in a key become on the way through the
	// HTTP API: storing it would file the record under an altered key.
	if strings.ContainsRune(key, utf8.RuneError) {
		return invalid(ReasonInvalidUTF8, "key: U+FFFD replacement character (invalid bytes replaced in transit)")
	}
	if n := utf8.RuneCountInString(key); n > MaxKeyChars {
		return invalid(ReasonFieldTooLong, "key: %d characters, max %d", n, MaxKeyChars)
	}
	// The key is a unique index and a Temporal workflow ID. MySQL's PAD SPACE
	// collations treat "a" and "a " as the same key, so a key that differs
	// only in surrounding blanks would collide with another record.
	if key != strings.TrimSpace(key) {
		return invalid(ReasonBadKey, "key: leading or trailing whitespace")
	}
	if strings.ContainsFunc(key, unicode.IsControl) {
		return invalid(ReasonBadKey, "key: control character")
	}
	return nil
}

func patientFields(root *node) (patientID, notes string, err error) {
	pd := root.member("patientData")
	if pd == nil || pd.kind == kindNull {
		return "", "", invalid(ReasonMissingPatientID, "patientData: missing")
	}
	if pd.kind != kindObject {
		return "", "", invalid(ReasonBadField, "patientData: not an object")
	}

	id := pd.member("patientId")
	switch {
	case id == nil || id.kind == kindNull:
		return "", "", invalid(ReasonMissingPatientID, "patientData.patientId: missing")
	case id.kind == kindString:
		if strings.TrimSpace(id.text) == "" {
			return "", "", invalid(ReasonMissingPatientID, "patientData.patientId: empty")
		}
		if strings.ContainsFunc(id.text, unicode.IsControl) {
			return "", "", invalid(ReasonBadField, "patientData.patientId: control character")
		}
	case id.kind == kindNumber:
		// Some devices send numeric MRNs. Only integers make sense as an
		// identifier; "1.5e3" is a producer bug, not an ID.
		if !isInteger(id.text) {
			return "", "", invalid(ReasonBadField, "patientData.patientId: number is not an integer")
		}
	default:
		return "", "", invalid(ReasonBadField, "patientData.patientId: not a string or number")
	}
	if n := utf8.RuneCountInString(id.text); n > MaxPatientIDChars {
		return "", "", invalid(ReasonFieldTooLong, "patientData.patientId: %d characters, max %d", n, MaxPatientIDChars)
	}

	switch n := pd.member("notes"); {
	case n == nil || n.kind == kindNull:
	case n.kind == kindString:
		if len(n.text) > MaxNotesBytes {
			return "", "", invalid(ReasonFieldTooLong, "patientData.notes: %d bytes, max %d", len(n.text), MaxNotesBytes)
		}
		notes = n.text
	default:
		return "", "", invalid(ReasonBadField, "patientData.notes: not a string")
	}
	return id.text, notes, nil
}

// isInteger reports whether s is an optionally negative run of ASCII digits.
func isInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
