package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Patient data is shown only with --show-payload. Masked, a JSON body
// keeps its shape (member names, nesting, which values are null or empty)
// so an operator can still see why it was rejected, but every string and
// number is replaced by its kind and size.

const masked = "*** (masked; --show-payload shows it)"

// maskBody renders a message body for the terminal.
func maskBody(body []byte, show bool) string {
	if show {
		return string(body)
	}
	if len(body) == 0 {
		return "(empty)"
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return fmt.Sprintf("(%d bytes, not valid JSON; masked: --show-payload shows it)", len(body))
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(maskValue(v)); err != nil {
		return fmt.Sprintf("(%d bytes; masked)", len(body))
	}
	return strings.TrimSpace(out.String()) + "  (values masked; --show-payload shows them)"
}

func maskValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, val := range x {
			m[k] = maskValue(val)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, val := range x {
			s[i] = maskValue(val)
		}
		return s
	case string:
		if x == "" {
			return ""
		}
		return fmt.Sprintf("<string, %d chars>", len([]rune(x)))
	case json.Number:
		return "<number>"
	default: // bool, nil
		return x
	}
}

// maskField shows a patient field only with --show-payload.
func maskField(v string, show bool) string {
	if show {
		return v
	}
	if v == "" {
		return "(empty)"
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
