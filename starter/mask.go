package main

import (
	"bytes"
	"encoding/json"
	"time"
)

// Patient data is shown only with --show-payload. Masked, nothing of a
// body is printed but whether it is JSON and of which top-level kind: not
// member names (a nested name can itself be data, e.g. a medication used
// as a key), not booleans, not lengths (the length of a name is a hint to
// it). The quarantine reason and detail say why a body was rejected.

const masked = "*** (masked; --show-payload shows it)"

// maskBody renders a message body for the terminal.
func maskBody(body []byte, show bool) string {
	if show {
		return string(body)
	}
	kind := "not valid JSON"
	if json.Valid(body) {
		switch t := bytes.TrimSpace(body); t[0] {
		case '{':
			kind = "a JSON object"
		case '[':
			kind = "a JSON array"
		default:
			kind = "a JSON value"
		}
	}
	return "*** (" + kind + ", masked; --show-payload shows it)"
}

// maskField shows a patient field only with --show-payload; masked, an
// empty value looks like any other.
func maskField(v string, show bool) string {
	if show {
		return v
	}
	return masked
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// maskValue hides one leaf value of a body (the conflict diff): nothing of
// it is shown, not its kind or length, for the reasons above.
func maskValue(any) any { return "***" }
