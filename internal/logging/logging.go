// Package logging builds the process logger of the worker and the starter
// from SYNCBRIDGE_LOG_FORMAT and SYNCBRIDGE_LOG_LEVEL. It exists so that
// one handler writes every line of a process (our own, the Temporal SDK's
// through workerapp.Dial, the embedded dev server's through devstack): a
// log collector (Alibaba Cloud Log Service, a Kubernetes node agent) parses
// a stream only if all of it has one shape.
//
// Field names are slog's and stay stable: time (RFC 3339 with
// nanoseconds), level (DEBUG, INFO, WARN, ERROR), msg; then the line's own
// fields, e.g. component, error, messageId, reason, and the SDK's
// Namespace, TaskQueue, WorkflowType, WorkflowID, RunID, ActivityType,
// Attempt and Error on the lines it writes.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Format is how a line is written.
type Format string

const (
	// JSON writes one JSON object a line: what collectors index without
	// a parsing rule. The production default.
	JSON Format = "json"
	// Text writes key=value pairs (slog's text handler): for a person
	// reading a terminal, the default of worker -dev.
	Text Format = "text"
)

// ParseFormat accepts json or text, in any case.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case JSON, Text:
		return f, nil
	}
	return "", fmt.Errorf("must be json or text, got %q", s)
}

// New returns a logger writing lines of format f at level and above to w.
// level may be a *slog.LevelVar set once the configuration is loaded. An
// unknown format writes JSON: Format values come from ParseFormat.
func New(w io.Writer, f Format, level slog.Leveler) *slog.Logger {
	o := &slog.HandlerOptions{Level: level}
	if f == Text {
		return slog.New(slog.NewTextHandler(w, o))
	}
	return slog.New(slog.NewJSONHandler(w, o))
}
