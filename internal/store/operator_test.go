package store

import (
	"errors"
	"strings"
	"testing"
)

func TestResolveConflictKeepExisting(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	a := mustParse(t, "k", "m1", body("P-1", "first", "1732600000000"))
	b := mustParse(t, "k", "m2", body("P-1", "second", "1732600000000"))
	if _, err := s.Insert(ctx, a); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Insert(ctx, b); err != nil || out != Conflict {
		t.Fatal(out, err)
	}
	cs, _ := s.Conflicts(ctx, "k")
	r, err := s.ResolveConflict(ctx, "k", cs[0].ID, false)
	if err != nil || !r.Changed || r.Status != ConflictResolvedKeepExisting {
		t.Fatalf("%+v %v", r, err)
	}
	row, _, _ := s.Record(ctx, "k")
	if row.Hash != a.Hash {
		t.Fatal("keep existing changed the row")
	}
	// Twice: no-op, and the other way is refused as a no-op too.
	for _, incoming := range []bool{false, true} {
		r, err = s.ResolveConflict(ctx, "k", cs[0].ID, incoming)
		if err != nil || r.Changed || r.Status != ConflictResolvedKeepExisting {
			t.Fatalf("again (incoming=%t): %+v %v", incoming, r, err)
		}
	}
	if row2, _, _ := s.Record(ctx, "k"); row2.Hash != a.Hash {
		t.Fatal("resolved conflict reopened")
	}
}

func TestResolveConflictIncomingKeepsReplacedVersion(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	a := mustParse(t, "k", "m1", body("P-1", "first", "1732600000000"))
	b := mustParse(t, "k", "m2", body("P-2", "second", "1732600001000"))
	if _, err := s.Insert(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(ctx, b); err != nil {
		t.Fatal(err)
	}
	cs, _ := s.Conflicts(ctx, "k")
	r, err := s.ResolveConflict(ctx, "k", cs[0].ID, true)
	if err != nil || !r.Changed || r.Status != ConflictResolvedIncoming || r.ReplacedHash != a.Hash {
		t.Fatalf("%+v %v", r, err)
	}
	row, _, _ := s.Record(ctx, "k")
	if row.Hash != b.Hash || row.PatientID != "P-2" || row.Notes != "second" || row.MessageID != "m2" ||
		!row.DeviceTime.Equal(b.DeviceTime) || string(row.Payload) != string(b.Payload) {
		t.Fatalf("row: %+v", row)
	}
	cs, _ = s.Conflicts(ctx, "k")
	if len(cs) != 2 || cs[1].Hash != a.Hash || cs[1].MessageID != "m1" || string(cs[1].Payload) != string(a.Payload) ||
		cs[1].ExistingHash != b.Hash || cs[1].Status != ConflictResolvedIncoming || cs[1].ResolvedAt.IsZero() {
		t.Fatalf("replaced version not kept: %+v", cs)
	}
	// The old version arriving again is a conflict against the new row
	// and does not disturb what was recorded.
	if out, err := s.Insert(ctx, a); err != nil || out != Conflict {
		t.Fatal(out, err)
	}
	if cs2, _ := s.Conflicts(ctx, "k"); len(cs2) != 2 {
		t.Fatalf("conflicts: %+v", cs2)
	}
	// Resolving again is a no-op.
	if r, err := s.ResolveConflict(ctx, "k", cs[0].ID, true); err != nil || r.Changed {
		t.Fatalf("again: %+v %v", r, err)
	}
}

func TestResolveConflictNotFound(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	if _, err := s.ResolveConflict(ctx, "k", 42, true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v", err)
	}
	a := mustParse(t, "k", "m1", body("P-1", "first", "1732600000000"))
	b := mustParse(t, "k", "m2", body("P-1", "second", "1732600000000"))
	_, _ = s.Insert(ctx, a)
	_, _ = s.Insert(ctx, b)
	cs, _ := s.Conflicts(ctx, "k")
	// The conflict belongs to k, not to another key.
	if _, err := s.ResolveConflict(ctx, "other", cs[0].ID, true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other key: %v", err)
	}
}

func TestQuarantineStatusChanges(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	id, err := s.Quarantine(ctx, QuarantineEntry{Key: "k", MessageID: "m", Reason: "bad_json", Body: []byte("{")})
	if err != nil {
		t.Fatal(err)
	}
	it, changed, err := s.RequestReplay(ctx, id, "by test")
	if err != nil || !changed || it.Status != QuarantineReplayRequested || it.StatusReason != "by test" || string(it.Body) != "{" {
		t.Fatalf("request replay: %+v %t %v", it, changed, err)
	}
	// Requesting again keeps it requested.
	if it, changed, err = s.RequestReplay(ctx, id, "again"); err != nil || !changed || it.Status != QuarantineReplayRequested {
		t.Fatalf("request again: %+v %t %v", it, changed, err)
	}
	// Quarantined again: back to quarantined.
	if st, err := s.FinishReplay(ctx, id, false, "still bad"); err != nil || st != QuarantineQuarantined {
		t.Fatal(st, err)
	}
	_, _, _ = s.RequestReplay(ctx, id, "after fix")
	if st, err := s.FinishReplay(ctx, id, true, "replayed: inserted"); err != nil || st != QuarantineReplayed {
		t.Fatal(st, err)
	}
	// Finishing twice, requesting or discarding a replayed row: no change.
	if st, err := s.FinishReplay(ctx, id, false, "late"); err != nil || st != QuarantineReplayed {
		t.Fatal(st, err)
	}
	if it, changed, err := s.RequestReplay(ctx, id, "x"); err != nil || changed || it.Status != QuarantineReplayed || it.StatusReason != "replayed: inserted" {
		t.Fatalf("request replay of replayed: %+v %t %v", it, changed, err)
	}
	if _, _, err := s.Discard(ctx, id, "x"); !errors.Is(err, ErrWrongState) {
		t.Fatalf("discard replayed: %v", err)
	}

	id2, _ := s.Quarantine(ctx, QuarantineEntry{Key: "k2", MessageID: "m2", Reason: "bad_json"})
	if _, _, err := s.Discard(ctx, id2, " "); err == nil {
		t.Fatal("discard without reason accepted")
	}
	it, changed, err = s.Discard(ctx, id2, "junk")
	if err != nil || !changed || it.Status != QuarantineDiscarded || it.StatusReason != "junk" {
		t.Fatalf("discard: %+v %t %v", it, changed, err)
	}
	if _, changed, err := s.Discard(ctx, id2, "again"); err != nil || changed {
		t.Fatalf("discard again: %t %v", changed, err)
	}
	if _, changed, _ := s.RequestReplay(ctx, id2, "x"); changed {
		t.Fatal("discarded row replayed")
	}
	if _, err := s.QuarantineByID(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing row: %v", err)
	}
	if _, _, err := s.RequestReplay(ctx, 999, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("request replay of missing row: %v", err)
	}

	// Listing filters; nothing was deleted.
	all, err := s.ListQuarantine(ctx, QuarantineFilter{WithoutBody: true})
	if err != nil || len(all) != 2 || all[0].Body != nil {
		t.Fatalf("list: %+v %v", all, err)
	}
	d, _ := s.ListQuarantine(ctx, QuarantineFilter{Status: QuarantineDiscarded})
	k, _ := s.ListQuarantine(ctx, QuarantineFilter{Key: "k"})
	after, _ := s.ListQuarantine(ctx, QuarantineFilter{AfterID: id, Limit: 1})
	if len(d) != 1 || d[0].ID != id2 || len(k) != 1 || k[0].ID != id || len(after) != 1 || after[0].ID != id2 {
		t.Fatalf("filters: %+v %+v %+v", d, k, after)
	}
}

func TestKeyState(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	if st, err := s.KeyState(ctx, "k"); err != nil || st.Stored || st.Quarantined {
		t.Fatal(st, err)
	}
	_, _ = s.Insert(ctx, mustParse(t, "k", "m1", body("P-1", "x", "1732600000000")))
	_, _ = s.Quarantine(ctx, QuarantineEntry{Key: "q", MessageID: "m9", Reason: "bad_json"})
	if st, _ := s.KeyState(ctx, "k"); !st.Stored || st.Quarantined {
		t.Fatal(st)
	}
	if st, _ := s.KeyState(ctx, "q"); st.Stored || !st.Quarantined {
		t.Fatal(st)
	}
	// Keys compare byte for byte.
	if st, _ := s.KeyState(ctx, "K"); st.Stored {
		t.Fatal("case-insensitive key match")
	}
}

func TestListConflictsFilters(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	for _, k := range []string{"a", "b"} {
		_, _ = s.Insert(ctx, mustParse(t, k, "m1", body("P-1", "x", "1732600000000")))
		_, _ = s.Insert(ctx, mustParse(t, k, "m2", body("P-1", "y", "1732600000000")))
	}
	open, err := s.ListConflicts(ctx, ConflictFilter{Status: ConflictOpen, WithoutPayload: true})
	if err != nil || len(open) != 2 || open[0].Payload != nil {
		t.Fatalf("%+v %v", open, err)
	}
	if _, err := s.ResolveConflict(ctx, "a", open[0].ID, false); err != nil {
		t.Fatal(err)
	}
	open, _ = s.ListConflicts(ctx, ConflictFilter{Status: ConflictOpen})
	byKey, _ := s.ListConflicts(ctx, ConflictFilter{Key: "a"})
	if len(open) != 1 || open[0].Key != "b" || len(byKey) != 1 || byKey[0].Status != ConflictResolvedKeepExisting {
		t.Fatalf("%+v %+v", open, byKey)
	}
	c, err := s.ConflictByID(ctx, byKey[0].ID)
	if err != nil || !strings.Contains(string(c.Payload), `"y"`) {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := s.ConflictByID(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}
