package testenv

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// testHandler writes records to the test log. Workers and pollers can log
// after their test returned, and testing panics on that, so the handler goes
// silent at the test's cleanup.
type testHandler struct {
	state *testLogState
	inner slog.Handler
}

type testLogState struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
	buf  bytes.Buffer
}

func newTestHandler(t testing.TB) *testHandler {
	st := &testLogState{t: t}
	t.Cleanup(func() {
		st.mu.Lock()
		st.done = true
		st.mu.Unlock()
	})
	return &testHandler{
		state: st,
		inner: slog.NewTextHandler(&st.buf, &slog.HandlerOptions{Level: slog.LevelDebug}),
	}
}

func (h *testHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo
}

func (h *testHandler) Handle(ctx context.Context, r slog.Record) error {
	st := h.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done {
		return nil
	}
	st.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	st.t.Log(strings.TrimRight(st.buf.String(), "\n"))
	return nil
}

func (h *testHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &testHandler{state: h.state, inner: h.inner.WithAttrs(attrs)}
}

func (h *testHandler) WithGroup(name string) slog.Handler {
	return &testHandler{state: h.state, inner: h.inner.WithGroup(name)}
}
