package workerapp

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/syncbridge/syncbridge/internal/contract"
)

// The SDK logs every activity that returns an error as `Activity error.`
// at ERROR. For a BadInput error that is the pipeline working as designed:
// the message is quarantined and acked, and a person sees it through
// `starter status`, the quarantine alert and the metrics. Logging it at
// ERROR would teach operators to ignore ERROR lines, so it is demoted to
// INFO; every other activity error keeps its level.

// expectedOutcomes wraps the handler the SDK logs through.
type expectedOutcomes struct{ slog.Handler }

func demoteExpectedOutcomes(h slog.Handler) slog.Handler { return expectedOutcomes{h} }

func (h expectedOutcomes) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelError && r.Message == "Activity error." && isBadInput(r) {
		demoted := slog.NewRecord(r.Time, slog.LevelInfo, "Activity rejected bad input; the message is quarantined", r.PC)
		r.Attrs(func(a slog.Attr) bool { demoted.AddAttrs(a); return true })
		if !h.Handler.Enabled(ctx, demoted.Level) {
			return nil
		}
		return h.Handler.Handle(ctx, demoted)
	}
	return h.Handler.Handle(ctx, r)
}

func isBadInput(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "Error" && strings.Contains(fmt.Sprint(a.Value.Any()), "(type: "+contract.ErrTypeBadInput+",") {
			found = true
			return false
		}
		return true
	})
	return found
}

func (h expectedOutcomes) WithAttrs(as []slog.Attr) slog.Handler {
	return expectedOutcomes{h.Handler.WithAttrs(as)}
}

func (h expectedOutcomes) WithGroup(name string) slog.Handler {
	return expectedOutcomes{h.Handler.WithGroup(name)}
}
