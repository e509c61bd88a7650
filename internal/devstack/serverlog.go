package devstack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
)

// serverLogger adapts the Temporal server's logger interface to slog. The
// server logs hundreds of info lines at start and on every shard movement, so
// the level is a threshold the caller controls and raises during shutdown,
// when the server's warnings about cancelled pollers are expected noise.
type serverLogger struct {
	log   *slog.Logger
	level slog.Leveler
	tags  []tag.Tag
}

var _ log.Logger = (*serverLogger)(nil)
var _ log.WithLogger = (*serverLogger)(nil)

func newServerLogger(l *slog.Logger, level slog.Leveler) *serverLogger {
	if l == nil {
		l = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &serverLogger{log: l.With("component", "temporal"), level: level}
}

// expectedNoise are server lines that, in a single-process dev stack, say
// nothing an operator must act on, matched by message and (optionally) a
// substring of the error they carry. They are logged at debug instead:
//   - every GetWorkflowExecutionHistory call of the Web UI and the SDK asks
//     for more events per page than the frontend's default threshold, and
//     the frontend warns about each one;
//   - at shutdown the matching service closes its task queues under the
//     worker's long polls, and the frontend reports each interrupted poll
//     as an error ("service failures … task queue closed"), although the
//     worker stops polling a moment later anyway;
//   - a call whose client went away (shutdown, a deadline) just as its
//     handler returned: the server's metrics interceptor then cannot add
//     its trailer to the already finished stream and logs an error,
//     although the call's outcome was settled.
var expectedNoise = []struct{ msg, errContains string }{
	{msg: "GetHistory page size is larger than threshold"},
	{msg: "service failures", errContains: "task queue closed"},
	{msg: "unable to add metrics baggage to gRPC trailer", errContains: "SendHeader called multiple times"},
}

func isExpectedNoise(msg string, groups ...[]tag.Tag) bool {
	for _, n := range expectedNoise {
		if n.msg != msg {
			continue
		}
		if n.errContains == "" {
			return true
		}
		for _, tags := range groups {
			for _, t := range tags {
				if strings.Contains(fmt.Sprint(tagValue(t.Value())), n.errContains) {
					return true
				}
			}
		}
	}
	return false
}

func (s *serverLogger) emit(lvl slog.Level, msg string, tags []tag.Tag) {
	if lvl > slog.LevelDebug && isExpectedNoise(msg, s.tags, tags) {
		lvl = slog.LevelDebug
	}
	if lvl < s.level.Level() {
		return
	}
	ctx := context.Background()
	if !s.log.Enabled(ctx, lvl) {
		return
	}
	s.log.Log(ctx, lvl, msg, tagsToArgs(s.tags, tags)...)
}

// tagValue keeps errors readable: slog's text handler would print a wrapped
// error struct with %+v otherwise.
func tagValue(v any) any {
	if err, ok := v.(error); ok {
		return err.Error()
	}
	return v
}

func (s *serverLogger) Debug(msg string, tags ...tag.Tag) { s.emit(slog.LevelDebug, msg, tags) }
func (s *serverLogger) Info(msg string, tags ...tag.Tag)  { s.emit(slog.LevelInfo, msg, tags) }
func (s *serverLogger) Warn(msg string, tags ...tag.Tag)  { s.emit(slog.LevelWarn, msg, tags) }
func (s *serverLogger) Error(msg string, tags ...tag.Tag) { s.emit(slog.LevelError, msg, tags) }

// DPanic panics only in the server's development mode; a dev stack is not
// that mode, so it is an error line like in production builds.
func (s *serverLogger) DPanic(msg string, tags ...tag.Tag) { s.emit(slog.LevelError, msg, tags) }

// Panic and Fatal must not return (the server relies on it), so they log
// regardless of the threshold and panic: a stack trace helps more than the
// bare exit the server's own zap logger would do.
func (s *serverLogger) Panic(msg string, tags ...tag.Tag) {
	s.log.Error(msg, tagsToArgs(s.tags, tags)...)
	panic(serverFatal{msg: msg, tags: tagsToArgs(s.tags, tags)})
}

func (s *serverLogger) Fatal(msg string, tags ...tag.Tag) {
	s.log.Error(msg, tagsToArgs(s.tags, tags)...)
	panic(serverFatal{msg: msg, tags: tagsToArgs(s.tags, tags)})
}

// serverFatal is the panic value of Fatal and Panic, so that catchFatal can
// tell the server giving up (e.g. a port taken between our check and its
// bind) from a bug.
type serverFatal struct {
	msg  string
	tags []any
}

func (f serverFatal) Error() string {
	return fmt.Sprintf("temporal server: %s %v", f.msg, f.tags)
}

// catchFatal runs fn, turning a server Fatal raised on this goroutine (all of
// the server's construction and start run here) into an error.
func catchFatal(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(serverFatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("devstack: %w", f)
		}
	}()
	return fn()
}

func (s *serverLogger) With(tags ...tag.Tag) log.Logger {
	return &serverLogger{
		log:   s.log,
		level: s.level,
		tags:  append(s.tags[:len(s.tags):len(s.tags)], tags...),
	}
}

func tagsToArgs(groups ...[]tag.Tag) []any {
	var args []any
	for _, tags := range groups {
		for _, t := range tags {
			args = append(args, slog.Any(t.Key(), tagValue(t.Value())))
		}
	}
	return args
}
