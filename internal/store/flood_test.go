package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/store/storetest"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// pendingNotices lists the outbox: notice_batches rows expanded, then
// record_notices rows (older workers'), without batch or claim.
func pendingNotices(t *testing.T, s *Store) []Notice {
	t.Helper()
	var out []Notice
	rows, err := s.DB.Query("SELECT outcome, records FROM notice_batches ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var outcome string
		var records []byte
		if err := rows.Scan(&outcome, &records); err != nil {
			t.Fatal(err)
		}
		var recs []batchRecord
		if err := json.Unmarshal(records, &recs); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			out = append(out, Notice{Key: r.Key, MessageID: r.MessageID, Outcome: outcome, Reason: r.Reason})
		}
	}
	rows.Close()
	rows, err = s.DB.Query("SELECT local_record_id, message_id, outcome, reason FROM record_notices ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var n Notice
		if err := rows.Scan(&n.Key, &n.MessageID, &n.Outcome, &n.Reason); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// bare is ns without batch and claim.
func bare(ns []Notice) []Notice {
	out := make([]Notice, len(ns))
	for i, n := range ns {
		out[i] = Notice{Key: n.Key, MessageID: n.MessageID, Outcome: n.Outcome, Reason: n.Reason}
	}
	return out
}

// A flood group's conflicts and quarantines are stored with one notice
// each, the call's notices under one batch name; a keyless quarantine has
// none; a redelivery lists its notices again, in a batch of its own (the
// run collector folds a pending twin); without a due time (the benchmark's
// ceiling) there are none at all.
func TestInsertFloodWritesNotices(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	s.SingleStatementInserts = true
	ctx := testCtx(t)
	if _, err := s.Insert(ctx, mustParse(t, "c", "m0", body("P1", "old", "1"))); err != nil {
		t.Fatal(err)
	}
	evs := []syncevent.Event{mustParse(t, "a", "m1", body("P1", "n", "1")), mustParse(t, "c", "m2", body("P1", "new", "1"))}
	bad := []QuarantineEntry{
		{Key: "q", MessageID: "m3", Reason: "bad_json", Body: []byte("{")},
		{MessageID: "m4", Reason: "missing_key", Body: []byte("{}")},
	}
	due := time.Now().Add(time.Minute)
	batches := map[string]bool{}
	for round := range 2 { // the second is a redelivery of the whole group
		res := s.InsertFlood(ctx, evs, bad, due)
		if res.Quarantine != nil {
			t.Fatal(res.Quarantine)
		}
		var outs []Outcome
		for _, r := range res.Records {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			outs = append(outs, r.Outcome)
		}
		// The redelivery finds its own rows: inserted again, as Insert says.
		wantOutcomes(t, "flood group", outs, []Outcome{Inserted, Conflict})
		wantN := []Notice{{Key: "c", MessageID: "m2", Outcome: "conflict"}, {Key: "q", MessageID: "m3", Outcome: "quarantined", Reason: "bad_json"}}
		if !slices.Equal(bare(res.Notices), wantN) {
			t.Fatalf("round %d: notices %+v, want %+v", round, res.Notices, wantN)
		}
		if b := res.Notices[0].Batch; b == "" || res.Notices[1].Batch != b || batches[b] {
			t.Fatalf("round %d: batches %q and %q (earlier %v): want one new batch name for the call", round, b, res.Notices[1].Batch, batches)
		}
		batches[res.Notices[0].Batch] = true
	}
	if got := pendingNotices(t, s); len(got) != 4 {
		t.Fatalf("outbox holds %+v, want the two notices twice", got)
	}
	var q int
	if err := s.DB.QueryRow("SELECT COUNT(*) FROM sync_quarantine").Scan(&q); err != nil || q != 2 {
		t.Fatalf("%d quarantine rows (%v), want 2", q, err)
	}

	res := s.InsertFlood(ctx, []syncevent.Event{mustParse(t, "c", "m5", body("P1", "newer", "1"))}, nil, time.Time{})
	if res.Records[0].Outcome != Conflict || len(res.Notices) != 0 {
		t.Fatalf("without a due time: %+v", res)
	}
	if got := pendingNotices(t, s); len(got) != 4 {
		t.Fatalf("a notice was written without a due time: %+v", got)
	}
}

// A notice is written in the transaction of what it announces: a failed
// COMMIT leaves neither the quarantine nor its notice.
func TestInsertFloodQuarantineAndNoticeAreAtomic(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	admin := storetest.AdminDB(t)
	ctx := testCtx(t)
	s.beforeCommit = func(ctx context.Context, tx *sql.Tx) error {
		id, err := connectionID(ctx, tx)
		if err != nil {
			return err
		}
		return kill(ctx, admin, id)
	}
	res := s.InsertFlood(ctx, nil, []QuarantineEntry{{Key: "q", MessageID: "m1", Reason: "bad_json"}}, time.Now().Add(time.Minute))
	s.beforeCommit = nil
	if res.Quarantine == nil || len(res.Notices) != 0 {
		t.Fatalf("a failed commit reported %+v", res)
	}
	var q int
	if err := s.DB.QueryRow("SELECT COUNT(*) FROM sync_quarantine").Scan(&q); err != nil || q != 0 {
		t.Fatalf("%d quarantine rows after a failed commit (%v)", q, err)
	}
	if got := pendingNotices(t, s); len(got) != 0 {
		t.Fatalf("notices after a failed commit: %+v", got)
	}
}

// Sweeps claim only notices past their due time, each batch for one
// sweep until the lease passes; delivered batches are deleted, each only
// under the claim that holds it.
func TestClaimNotices(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	now := time.Now()
	var written [][]Notice
	for _, keys := range [][]string{{"a", "b"}, {"c"}} {
		var bad []QuarantineEntry
		for _, k := range keys {
			bad = append(bad, QuarantineEntry{Key: k, MessageID: "m-" + k, Reason: "bad_json"})
		}
		res := s.InsertFlood(ctx, nil, bad, now.Add(time.Minute))
		if res.Quarantine != nil {
			t.Fatal(res.Quarantine)
		}
		written = append(written, res.Notices)
	}
	if got, err := s.ClaimNotices(ctx, now, time.Minute, 10); err != nil || len(got) != 0 {
		t.Fatalf("claimed notices before their due time: %+v, %v", got, err)
	}
	later := now.Add(2 * time.Minute)
	first, err := s.ClaimNotices(ctx, later, time.Minute, 1)
	if err != nil || !slices.Equal(bare(first), bare(written[0])) || first[0].Claim == "" || first[0].Batch != written[0][0].Batch {
		t.Fatalf("first sweep: %+v, %v; want the first batch, claimed", first, err)
	}
	second, err := s.ClaimNotices(ctx, later, time.Minute, 10)
	if err != nil || !slices.Equal(bare(second), bare(written[1])) || second[0].Claim == first[0].Claim {
		t.Fatalf("second sweep took %+v, %v; want the other batch only", second, err)
	}
	if again, err := s.ClaimNotices(ctx, later.Add(30*time.Second), time.Minute, 10); err != nil || len(again) != 0 {
		t.Fatalf("claimed within the lease: %+v, %v", again, err)
	}
	// The writer's late delete (no claim) leaves a batch a sweep holds.
	if err := s.DeleteNotices(ctx, written[0]); err != nil {
		t.Fatal(err)
	}
	if got := pendingNotices(t, s); len(got) != 3 {
		t.Fatalf("the writer deleted a claimed batch: %+v left", got)
	}
	if err := s.DeleteNotices(ctx, first); err != nil {
		t.Fatal(err)
	}
	if back, err := s.ClaimNotices(ctx, later.Add(2*time.Minute), time.Minute, 10); err != nil || !slices.Equal(bare(back), bare(second)) {
		t.Fatalf("after the lease: %+v, %v; want the undelivered %+v back", back, err, second)
	}
	if pending, overdue, err := s.PendingNotices(ctx, later.Add(10*time.Minute)); err != nil || pending != 1 || overdue != 1 {
		t.Fatalf("PendingNotices = %d, %d, %v", pending, overdue, err)
	}
}

// The writer deletes its batch once delivered, while no sweep holds it.
func TestDeleteNoticesOfTheWriter(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	s.SingleStatementInserts = true
	if _, err := s.Insert(ctx, mustParse(t, "c", "m0", body("P1", "old", "1"))); err != nil {
		t.Fatal(err)
	}
	res := s.InsertFlood(ctx, []syncevent.Event{mustParse(t, "c", "m1", body("P1", "new", "1"))},
		[]QuarantineEntry{{Key: "q", MessageID: "m2", Reason: "bad_json"}}, time.Now().Add(time.Minute))
	if len(res.Notices) != 2 {
		t.Fatalf("notices %+v, want a conflict and a quarantine", res.Notices)
	}
	if err := s.DeleteNotices(ctx, res.Notices); err != nil {
		t.Fatal(err)
	}
	if got := pendingNotices(t, s); len(got) != 0 {
		t.Fatalf("left after delivery: %+v", got)
	}
}

// Rows an older worker wrote to record_notices, one per notice, are swept
// and deleted like batches.
func TestClaimNoticesTakesOverRecordNotices(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	now := time.Now()
	if _, err := s.DB.ExecContext(ctx, `INSERT INTO record_notices (local_record_id, message_id, outcome, reason, due_at)
		VALUES ('old-1', 'm1', 'conflict', '', ?), ('old-2', 'm2', 'quarantined', 'bad_json', ?)`, now.UTC(), now.UTC()); err != nil {
		t.Fatal(err)
	}
	got, err := s.ClaimNotices(ctx, now.Add(time.Second), time.Minute, 10)
	want := []Notice{{Key: "old-1", MessageID: "m1", Outcome: "conflict"}, {Key: "old-2", MessageID: "m2", Outcome: "quarantined", Reason: "bad_json"}}
	if err != nil || !slices.Equal(bare(got), want) || got[0].Batch != "" {
		t.Fatalf("claimed %+v, %v; want %+v", got, err, want)
	}
	if pending, _, err := s.PendingNotices(ctx, now); err != nil || pending != 2 {
		t.Fatalf("PendingNotices = %d, %v; want 2", pending, err)
	}
	if err := s.DeleteNotices(ctx, got); err != nil {
		t.Fatal(err)
	}
	if left := pendingNotices(t, s); len(left) != 0 {
		t.Fatalf("left after delivery: %+v", left)
	}
}
