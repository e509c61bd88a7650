package devstack

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"go.temporal.io/server/common/log/tag"
)

func TestServerLoggerFiltersAndForwards(t *testing.T) {
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	l := newServerLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), level)
	l.Info("chatty start line")
	l.With(tag.NewStringTag("service", "history")).Warn("shard moved", tag.NewErrorTag("err", errors.New("boom")))
	level.Set(slog.LevelError)
	l.Warn("poller cancelled during stop")
	l.DPanic("dev-only panic")
	out := buf.String()
	if strings.Contains(out, "chatty") || strings.Contains(out, "poller cancelled") {
		t.Errorf("lines below the threshold were forwarded:\n%s", out)
	}
	for _, want := range []string{"shard moved", "service=history", "err=boom", "component=temporal", "dev-only panic"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCatchFatalTurnsServerFatalIntoError(t *testing.T) {
	l := newServerLogger(nil, slog.LevelWarn)
	err := catchFatal(func() error {
		l.Fatal("Failed to start gRPC listener", tag.NewStringTag("address", "127.0.0.1:7234"))
		return nil
	})
	var f serverFatal
	if !errors.As(err, &f) || !strings.Contains(err.Error(), "gRPC listener") || !strings.Contains(err.Error(), "7234") {
		t.Fatalf("want the fatal as an error, got %v", err)
	}
	defer func() {
		if r := recover(); r != "unrelated" {
			t.Fatalf("an unrelated panic must pass through, got %v", r)
		}
	}()
	_ = catchFatal(func() error { panic("unrelated") })
}

// The dev stack's known noise is demoted to debug; the same message with
// another error, or any other error, still shows.
func TestServerLoggerDemotesExpectedNoise(t *testing.T) {
	var buf bytes.Buffer
	l := newServerLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), slog.LevelInfo)
	l.Warn("GetHistory page size is larger than threshold", tag.NewInt32("page-size", 1000))
	l.With(tag.NewStringTag("service", "frontend")).Error("service failures",
		tag.NewErrorTag("error", errors.New("task queue closed")))
	l.Error("service failures", tag.NewErrorTag("error", errors.New("persistence unavailable")))
	out := buf.String()
	if strings.Contains(out, "page size") || strings.Contains(out, "task queue closed") {
		t.Errorf("expected noise forwarded above debug:\n%s", out)
	}
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "persistence unavailable") {
		t.Errorf("a real service failure was hidden:\n%s", out)
	}

	buf.Reset()
	l = newServerLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), slog.LevelDebug)
	l.Error("service failures", tag.NewErrorTag("error", errors.New("task queue closed")))
	if !strings.Contains(buf.String(), "level=DEBUG") {
		t.Errorf("demoted line not at debug: %s", buf.String())
	}
}
