package main

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/store"
)

// A row written before full keys were kept holds its key cut to 128
// characters: replay refuses it instead of running it under another key,
// and leaves the row as it was.
func TestQuarantineReplayRefusesInexactKey(t *testing.T) {
	h := newHarness(t, mqemu.Config{}, nil)
	ctx := context.Background()
	id, err := h.st.Quarantine(ctx, store.QuarantineEntry{Key: strings.Repeat("k", 200), MessageID: "msg-cut", Tag: "SyncEvent",
		Reason: "field_too_long", Body: body("P-1", "n")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.env.DB.ExecContext(ctx, "UPDATE sync_quarantine SET raw_key = NULL WHERE id = ?", id); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := h.starter("quarantine", "replay", strconv.FormatInt(id, 10))
	if code != exitFailure || !strings.Contains(out+errOut, "cannot reproduce") {
		t.Fatalf("replay of a row with a cut key: exit %d\n%s%s", code, out, errOut)
	}
	if q, err := h.st.QuarantineByID(ctx, id); err != nil || q.Status != store.QuarantineQuarantined {
		t.Fatalf("row after refused replay: %+v %v", q, err)
	}
}
