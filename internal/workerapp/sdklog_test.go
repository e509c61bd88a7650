package workerapp

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/syncbridge/syncbridge/internal/contract"
)

// A BadInput activity error (a quarantine, expected) is logged at INFO;
// any other activity error stays at ERROR. Logged through the SDK's own
// structured logger, as the worker does.
func TestBadInputActivityErrorIsNotAnError(t *testing.T) {
	var buf bytes.Buffer
	inner := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	l := sdklog.With(sdklog.NewStructuredLogger(slog.New(demoteExpectedOutcomes(inner))), "Namespace", "default")
	bad := temporal.NewNonRetryableApplicationError("invalid sync event: bad_json", contract.ErrTypeBadInput, nil)
	l.Error("Activity error.", "ActivityType", "Insert", "Error", bad)
	l.Error("Activity error.", "ActivityType", "Insert", "Error", errors.New("insert record m1: transient database error: connection refused"))
	l.Error("Workflow panic", "Error", bad)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines:\n%s", buf.String())
	}
	if !strings.Contains(lines[0], "level=INFO") || !strings.Contains(lines[0], "quarantined") || !strings.Contains(lines[0], "Namespace=default") || !strings.Contains(lines[0], "bad_json") {
		t.Errorf("BadInput activity error not demoted with its context: %s", lines[0])
	}
	if !strings.Contains(lines[1], "level=ERROR") || !strings.Contains(lines[1], "connection refused") {
		t.Errorf("a real activity error was demoted: %s", lines[1])
	}
	if !strings.Contains(lines[2], "level=ERROR") {
		t.Errorf("only activity errors are demoted: %s", lines[2])
	}

	buf.Reset()
	quiet := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})
	sdklog.NewStructuredLogger(slog.New(demoteExpectedOutcomes(quiet))).Error("Activity error.", "Error", bad)
	if buf.Len() != 0 {
		t.Errorf("demoted line printed above its level: %s", buf.String())
	}
}
