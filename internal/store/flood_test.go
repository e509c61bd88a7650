package store

import (
	"context"
	"database/sql"
	"slices"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/store/storetest"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

func pendingNotices(t *testing.T, s *Store) []Notice {
	t.Helper()
	rows, err := s.DB.Query("SELECT local_record_id, message_id, outcome, reason FROM record_notices ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []Notice
	for rows.Next() {
		var n Notice
		if err := rows.Scan(&n.Key, &n.MessageID, &n.Outcome, &n.Reason); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// A flood group's conflicts and quarantines are stored with one notice
// each; a keyless quarantine has none; a redelivery adds no second notice;
// without a due time (the benchmark's ceiling) there are none at all.
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
		if !slices.Equal(res.Notices, wantN) {
			t.Fatalf("round %d: notices %+v, want %+v", round, res.Notices, wantN)
		}
	}
	if got := pendingNotices(t, s); len(got) != 2 {
		t.Fatalf("outbox holds %+v, want the two notices once", got)
	}
	var q int
	if err := s.DB.QueryRow("SELECT COUNT(*) FROM sync_quarantine").Scan(&q); err != nil || q != 2 {
		t.Fatalf("%d quarantine rows (%v), want 2", q, err)
	}

	res := s.InsertFlood(ctx, []syncevent.Event{mustParse(t, "c", "m5", body("P1", "newer", "1"))}, nil, time.Time{})
	if res.Records[0].Outcome != Conflict || len(res.Notices) != 0 {
		t.Fatalf("without a due time: %+v", res)
	}
	if got := pendingNotices(t, s); len(got) != 2 {
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

// Sweeps claim only notices past their due time, each for one sweep until
// the lease passes; delivered notices are deleted.
func TestClaimNotices(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	now := time.Now()
	res := s.InsertFlood(ctx, nil, []QuarantineEntry{
		{Key: "a", MessageID: "m1", Reason: "bad_json"}, {Key: "b", MessageID: "m2", Reason: "bad_json"},
	}, now.Add(time.Minute))
	if res.Quarantine != nil {
		t.Fatal(res.Quarantine)
	}
	if got, err := s.ClaimNotices(ctx, now, time.Minute, 10); err != nil || len(got) != 0 {
		t.Fatalf("claimed notices before their due time: %+v, %v", got, err)
	}
	later := now.Add(2 * time.Minute)
	first, err := s.ClaimNotices(ctx, later, time.Minute, 1)
	if err != nil || len(first) != 1 {
		t.Fatalf("first sweep: %+v, %v", first, err)
	}
	second, err := s.ClaimNotices(ctx, later, time.Minute, 10)
	if err != nil || len(second) != 1 || second[0] == first[0] {
		t.Fatalf("second sweep took %+v (first %+v), %v; want the other notice only", second, first, err)
	}
	if again, err := s.ClaimNotices(ctx, later.Add(30*time.Second), time.Minute, 10); err != nil || len(again) != 0 {
		t.Fatalf("claimed within the lease: %+v, %v", again, err)
	}
	if err := s.DeleteNotices(ctx, first); err != nil {
		t.Fatal(err)
	}
	if back, err := s.ClaimNotices(ctx, later.Add(2*time.Minute), time.Minute, 10); err != nil || !slices.Equal(back, second) {
		t.Fatalf("after the lease: %+v, %v; want the undelivered %+v back", back, err, second)
	}
	if pending, overdue, err := s.PendingNotices(ctx, later.Add(10*time.Minute)); err != nil || pending != 1 || overdue != 1 {
		t.Fatalf("PendingNotices = %d, %d, %v", pending, overdue, err)
	}
}
