package syncevent

import (
	"strconv"
	"time"
)

// The DATETIME range MySQL documents as supported; values outside it are
// either rejected or stored wrongly depending on the server.
var (
	minDeviceTime = time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxDeviceTime = time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC)
)

// isoLayouts are tried in order. time.Parse accepts an optional fractional
// second after the seconds field even when the layout has none, so each
// layout covers both "with" and "without fractional seconds".
var isoLayouts = []string{
	time.RFC3339,               // 2025-03-03T08:00:00Z, ...+02:00
	"2006-01-02T15:04:05Z0700", // basic offset: +0200
	"2006-01-02T15:04:05Z07",   // hour-only offset: +02
	"2006-01-02T15:04:05",      // no zone: UTC by contract
}

func deviceTime(v *node) (time.Time, error) {
	if v == nil || v.kind == kindNull {
		return time.Time{}, invalid(ReasonBadTimestamp, "deviceTimestamp: missing")
	}
	var t time.Time
	switch v.kind {
	case kindNumber:
		ms, err := strconv.ParseInt(v.text, 10, 64)
		if err != nil {
			return time.Time{}, invalid(ReasonBadTimestamp, "deviceTimestamp: number is not integer epoch milliseconds")
		}
		t = time.UnixMilli(ms)
	case kindString:
		var ok bool
		if t, ok = parseTimestampString(v.text); !ok {
			return time.Time{}, invalid(ReasonBadTimestamp, "deviceTimestamp: unparseable")
		}
	default:
		return time.Time{}, invalid(ReasonBadTimestamp, "deviceTimestamp: not a number or string")
	}
	t = t.UTC().Truncate(time.Millisecond)
	if t.Before(minDeviceTime) || t.After(maxDeviceTime) {
		return time.Time{}, invalid(ReasonBadTimestamp, "deviceTimestamp: outside years 1000-9999")
	}
	return t, nil
}

func parseTimestampString(s string) (time.Time, bool) {
	// Long enough for any accepted form with nanoseconds and an offset;
	// anything longer is garbage and not worth parsing.
	if len(s) == 0 || len(s) > 40 {
		return time.Time{}, false
	}
	if isInteger(s) {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		return time.UnixMilli(ms), true
	}
	// RFC 3339 allows a space or a lower-case "t" between date and time and
	// a lower-case "z"; time.Parse wants "T" and "Z".
	b := []byte(s)
	if len(b) > 10 && (b[10] == ' ' || b[10] == 't') {
		b[10] = 'T'
	}
	if b[len(b)-1] == 'z' {
		b[len(b)-1] = 'Z'
	}
	norm := string(b)
	for _, layout := range isoLayouts {
		if t, err := time.Parse(layout, norm); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
