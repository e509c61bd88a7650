package store

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/syncbridge/syncbridge/internal/store/storetest"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// batchOK runs InsertBatch and fails the test on any per-event error.
func batchOK(t *testing.T, s *Store, ctx context.Context, evs []syncevent.Event) []Outcome {
	t.Helper()
	outs := make([]Outcome, len(evs))
	for i, r := range s.InsertBatch(ctx, evs) {
		if r.Err != nil {
			t.Fatalf("event %d (%s): %v", i, evs[i].Key, r.Err)
		}
		outs[i] = r.Outcome
	}
	return outs
}

func wantOutcomes(t *testing.T, label string, got, want []Outcome) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: outcomes %v, want %v", label, got, want)
	}
}

// conflictHashes returns the incoming hashes recorded for key.
func conflictHashes(t *testing.T, s *Store, ctx context.Context, key string) []string {
	t.Helper()
	cs, err := s.Conflicts(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var hs []string
	for _, c := range cs {
		hs = append(hs, c.Hash)
	}
	return hs
}

// One batch holding every case gives each event Insert's answer, and the
// rows Insert would have left.
func TestInsertBatchMixed(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	v := func(key, msg, notes string) syncevent.Event { return mustParse(t, key, msg, body("P1", notes, "1")) }

	// Existing state: dup, conf and conf2 stored; conf2 already has a
	// conflicting version recorded.
	for _, ev := range []syncevent.Event{v("dup", "m-dup", "a"), v("conf", "m-conf", "a"), v("conf2", "m-conf2", "a"), v("own", "m-own", "a")} {
		if out, err := s.Insert(ctx, ev); err != nil || out != Inserted {
			t.Fatalf("setup %s: %v %v", ev.Key, out, err)
		}
	}
	if out, err := s.Insert(ctx, v("conf2", "m-conf2-b", "b")); err != nil || out != Conflict {
		t.Fatalf("setup conflict: %v %v", out, err)
	}

	batch := []syncevent.Event{
		v("new1", "m-new1", "x"),
		v("dup", "m-dup-2", "a"),     // same content, another message
		v("conf", "m-conf-2", "b"),   // other content
		v("conf2", "m-conf2-c", "b"), // the version already recorded as a conflict
		v("own", "m-own", "a"),       // this very message, stored before
		v("new2", "", "y"),           // no message ID
	}
	wantOutcomes(t, "mixed", batchOK(t, s, ctx, batch),
		[]Outcome{Inserted, Duplicate, Conflict, Conflict, Inserted, Inserted})

	for _, key := range []string{"new1", "new2"} {
		row, ok, err := s.Record(ctx, key)
		i := slices.IndexFunc(batch, func(ev syncevent.Event) bool { return ev.Key == key })
		if err != nil || !ok || row.Hash != batch[i].Hash || row.MessageID != batch[i].MessageID ||
			row.Notes != batch[i].Notes || !bytes.Equal(row.Payload, batch[i].Payload) || !row.DeviceTime.Equal(batch[i].DeviceTime) {
			t.Errorf("%s: stored %+v (%v %v)", key, row, ok, err)
		}
	}
	for _, key := range []string{"dup", "conf", "conf2", "own"} {
		row, _, err := s.Record(ctx, key)
		if err != nil || row.Notes != "a" || row.MessageID != "m-"+key {
			t.Errorf("%s: existing row changed: %+v %v", key, row, err)
		}
	}
	if hs := conflictHashes(t, s, ctx, "conf"); len(hs) != 1 || hs[0] != batch[2].Hash {
		t.Errorf("conf: conflicts %v, want the incoming version", hs)
	}
	cs, err := s.Conflicts(ctx, "conf")
	if err != nil || len(cs) != 1 || cs[0].MessageID != "m-conf-2" || cs[0].ExistingHash != v("conf", "", "a").Hash ||
		!bytes.Equal(cs[0].Payload, batch[2].Payload) || cs[0].Status != ConflictOpen {
		t.Errorf("conf: conflict row %+v %v", cs, err)
	}
	if hs := conflictHashes(t, s, ctx, "conf2"); len(hs) != 1 {
		t.Errorf("conf2: %d conflicts, want the one recorded before", len(hs))
	}
	if n, err := s.CountRecords(ctx); err != nil || n != 6 {
		t.Errorf("CountRecords = %d, %v; want 6", n, err)
	}
}

// Without message IDs a batch cannot tell an event's own fresh row from an
// older copy by the rows alone; it must still answer Duplicate for the
// copy and Inserted for the new one.
func TestInsertBatchAnonymousCopies(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	old := mustParse(t, "anon-old", "", body("P1", "a", "1"))
	if out, err := s.Insert(ctx, old); err != nil || out != Inserted {
		t.Fatalf("setup: %v %v", out, err)
	}
	batch := []syncevent.Event{mustParse(t, "anon-new", "", body("P1", "b", "1")), old}
	wantOutcomes(t, "anonymous", batchOK(t, s, ctx, batch), []Outcome{Inserted, Duplicate})
	wantOutcomes(t, "anonymous again", batchOK(t, s, ctx, batch), []Outcome{Duplicate, Duplicate})
}

// Events for one key are taken in input order, each seeing the one before.
func TestInsertBatchSameKeyTwice(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	a := mustParse(t, "k", "m1", body("P1", "a", "1"))
	b := mustParse(t, "k", "m2", body("P1", "b", "1"))
	aAgain := mustParse(t, "k", "m3", body("P1", "a", "1"))
	other := mustParse(t, "other", "m4", body("P1", "o", "1"))
	wantOutcomes(t, "same key", batchOK(t, s, ctx, []syncevent.Event{a, other, b, aAgain, a, b}),
		[]Outcome{Inserted, Inserted, Conflict, Duplicate, Inserted, Conflict})
	row, _, err := s.Record(ctx, "k")
	if err != nil || row.Hash != a.Hash || row.MessageID != "m1" {
		t.Errorf("stored %+v %v, want the first version", row, err)
	}
	if hs := conflictHashes(t, s, ctx, "k"); len(hs) != 1 || hs[0] != b.Hash {
		t.Errorf("conflicts %v, want the second version once", hs)
	}
}

// Data the server rejects fails only its own event; the others are stored.
func TestInsertBatchBadDataIsolated(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	bad := mustParse(t, "bad", "m-bad", body("P1", "n", "1"))
	bad.PatientID = strings.Repeat("p", 65) // patient_id is VARCHAR(64)
	existing := mustParse(t, "existing", "m-e", body("P1", "n", "1"))
	if _, err := s.Insert(ctx, existing); err != nil {
		t.Fatal(err)
	}
	changed := mustParse(t, "existing", "m-e2", body("P1", "changed", "1"))
	evs := []syncevent.Event{
		mustParse(t, "good1", "m1", body("P1", "n", "1")),
		bad,
		changed,
		{Key: "incomplete"},
		mustParse(t, "good2", "m2", body("P1", "n", "1")),
	}
	res := s.InsertBatch(ctx, evs)
	want := []Outcome{Inserted, "", Conflict, "", Inserted}
	for i, r := range res {
		switch i {
		case 1, 3:
			if r.Err == nil || !IsBadData(r.Err) || IsTransient(r.Err) {
				t.Errorf("event %d: %v, %v; want a bad-data error", i, r.Outcome, r.Err)
			}
		default:
			if r.Err != nil || r.Outcome != want[i] {
				t.Errorf("event %d: %v, %v; want %s", i, r.Outcome, r.Err, want[i])
			}
		}
	}
	if _, ok, _ := s.Record(ctx, "bad"); ok {
		t.Error("bad event stored")
	}
	if n, err := s.CountRecords(ctx); err != nil || n != 3 {
		t.Errorf("CountRecords = %d, %v; want 3", n, err)
	}
	if hs := conflictHashes(t, s, ctx, "existing"); len(hs) != 1 {
		t.Errorf("%d conflicts, want 1", len(hs))
	}
}

// A batch whose COMMIT went through but whose reply never reached the
// caller is retried by it: the retry reports what the first attempt did
// (Inserted for the new records, thanks to the message IDs) and creates
// nothing twice.
func TestInsertBatchRetryAfterLostReply(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	if _, err := s.Insert(ctx, mustParse(t, "c", "m0", body("P1", "old", "1"))); err != nil {
		t.Fatal(err)
	}
	evs := []syncevent.Event{
		mustParse(t, "a", "m1", body("P1", "n", "1")),
		mustParse(t, "b", "m2", body("P1", "n", "1")),
		mustParse(t, "c", "m3", body("P1", "new", "1")),
	}
	want := []Outcome{Inserted, Inserted, Conflict}
	// The reply lost: the hook runs after COMMIT in the caller's view, so
	// the first results are dropped as a lost reply would drop them.
	_ = s.InsertBatch(ctx, evs)
	wantOutcomes(t, "retry", batchOK(t, s, ctx, evs), want)
	if n, err := s.CountRecords(ctx); err != nil || n != 3 {
		t.Errorf("CountRecords = %d, %v; want 3", n, err)
	}
	if hs := conflictHashes(t, s, ctx, "c"); len(hs) != 1 {
		t.Errorf("%d conflicts, want 1", len(hs))
	}
}

// A COMMIT that fails reports every event of the batch failed, and none is
// stored: the callers ack only what InsertBatch reports.
func TestInsertBatchCommitFailure(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	admin := storetest.AdminDB(t)
	ctx := testCtx(t)
	if _, err := s.Insert(ctx, mustParse(t, "c", "m0", body("P1", "old", "1"))); err != nil {
		t.Fatal(err)
	}
	evs := []syncevent.Event{
		mustParse(t, "a", "m1", body("P1", "n", "1")),
		mustParse(t, "b", "m2", body("P1", "n", "1")),
		mustParse(t, "c", "m3", body("P1", "new", "1")),
	}
	killed := 0
	s.beforeCommit = func(ctx context.Context, tx *sql.Tx) error {
		id, err := connectionID(ctx, tx)
		if err != nil {
			return err
		}
		killed++
		return kill(ctx, admin, id)
	}
	res := s.InsertBatch(ctx, evs)
	s.beforeCommit = nil
	if killed != 1 {
		t.Fatalf("hook ran %d times, want once", killed)
	}
	for i, r := range res {
		if r.Err == nil || r.Outcome != "" || !IsTransient(r.Err) || !strings.Contains(r.Err.Error(), "commit") {
			t.Errorf("event %d: %v, %v; want a transient commit error and no outcome", i, r.Outcome, r.Err)
		}
	}
	if n, err := s.CountRecords(ctx); err != nil || n != 1 {
		t.Errorf("CountRecords = %d, %v; want 1 (nothing from the failed batch)", n, err)
	}
	if hs := conflictHashes(t, s, ctx, "c"); len(hs) != 0 {
		t.Errorf("failed batch left %d conflicts", len(hs))
	}
	wantOutcomes(t, "retry", batchOK(t, s, ctx, evs), []Outcome{Inserted, Inserted, Conflict})
}

// A deadlock victim's batch runs again; a lock wait timeout is returned
// (as Insert does), to be retried by the caller.
func TestInsertBatchRetriesDeadlock(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	cases := []struct {
		name     string
		failures int
		number   uint16
		attempts int
		fail     bool
	}{
		{"deadlock once", 1, 1213, 2, false},
		{"duplicate key once", 1, 1062, 2, false},
		{"deadlock always", 100, 1213, maxInsertAttempts, true},
		{"lock wait timeout", 100, 1205, 1, true},
	}
	for i, tc := range cases {
		attempts := 0
		s.beforeCommit = func(context.Context, *sql.Tx) error {
			attempts++
			if attempts <= tc.failures {
				return wrap("test", &mysql.MySQLError{Number: tc.number})
			}
			return nil
		}
		evs := []syncevent.Event{
			mustParse(t, fmt.Sprintf("r%d-a", i), "m1", body("P1", "n", "1")),
			mustParse(t, fmt.Sprintf("r%d-b", i), "m2", body("P1", "n", "1")),
		}
		res := s.InsertBatch(ctx, evs)
		s.beforeCommit = nil
		if attempts != tc.attempts {
			t.Errorf("%s: %d attempts, want %d", tc.name, attempts, tc.attempts)
		}
		for j, r := range res {
			if (r.Err != nil) != tc.fail || (!tc.fail && r.Outcome != Inserted) {
				t.Errorf("%s: event %d: %v, %v", tc.name, j, r.Outcome, r.Err)
			}
			if _, ok, _ := s.Record(ctx, evs[j].Key); ok == tc.fail {
				t.Errorf("%s: event %d stored = %v", tc.name, j, ok)
			}
		}
	}
}

// Batches from several goroutines and two separate pools (two worker
// processes) over overlapping keys, in shuffled order, with three versions
// per key: one row per key, every distinct version kept exactly once (the
// row or a conflict), one Inserted per key, and no error left over after
// the deadlock retries.
func TestInsertBatchConcurrent(t *testing.T) {
	t.Parallel()
	s1, dsn := newStore(t)
	ctx := testCtx(t)
	db2, err := Open(ctx, dsn, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db2.Close() })
	stores := []*Store{s1, New(db2)}
	var retries atomic.Int64
	for _, s := range stores {
		s.onRetry = func(error) { retries.Add(1) }
	}

	const goroutines, keys, versions, batchSize = 6, 80, 3, 16
	type sent struct {
		ev  syncevent.Event
		out Outcome
	}
	var (
		mu   sync.Mutex
		all  []sent
		wg   sync.WaitGroup
		errs = make(chan error, goroutines*keys)
	)
	for g := range goroutines {
		rng := rand.New(rand.NewPCG(uint64(g), 99))
		evs := make([]syncevent.Event, 0, keys)
		for k := range keys {
			v := (k + g) % versions
			evs = append(evs, mustParse(t, fmt.Sprintf("key-%03d", k), fmt.Sprintf("g%d-k%d", g, k),
				body("P1", fmt.Sprintf("version %d", v), "1")))
		}
		rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		s := stores[g%2]
		wg.Go(func() {
			for start := 0; start < len(evs); start += batchSize {
				b := evs[start:min(start+batchSize, len(evs))]
				res := s.InsertBatch(ctx, b)
				mu.Lock()
				for i, r := range res {
					if r.Err != nil {
						errs <- fmt.Errorf("goroutine %d %s: %w", g, b[i].Key, r.Err)
						continue
					}
					all = append(all, sent{b[i], r.Outcome})
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Sorted keys give every transaction the same lock order; without the
	// sort about a third of these transactions die as deadlock victims.
	t.Logf("%d transactions retried after a deadlock or duplicate key", retries.Load())
	if n := retries.Load(); n > 3 {
		t.Errorf("%d retries for %d batches: lock order not consistent", n, goroutines*((keys+batchSize-1)/batchSize))
	}

	byKey := map[string][]sent{}
	for _, x := range all {
		byKey[x.ev.Key] = append(byKey[x.ev.Key], x)
	}
	for key, xs := range byKey {
		row, ok, err := s1.Record(ctx, key)
		if err != nil || !ok {
			t.Fatalf("%s: no row (%v)", key, err)
		}
		inserted := 0
		distinct := map[string]bool{}
		for _, x := range xs {
			distinct[x.ev.Hash] = true
			want := Conflict
			if x.ev.Hash == row.Hash {
				want = Duplicate
				if x.ev.MessageID == row.MessageID {
					want = Inserted
				}
			}
			if x.out != want {
				t.Errorf("%s %s: %s, want %s", key, x.ev.MessageID, x.out, want)
			}
			if x.out == Inserted {
				inserted++
			}
		}
		if inserted != 1 {
			t.Errorf("%s: %d Inserted, want 1", key, inserted)
		}
		kept := []string{row.Hash}
		kept = append(kept, conflictHashes(t, s1, ctx, key)...)
		slices.Sort(kept)
		var want []string
		for h := range distinct {
			want = append(want, h)
		}
		slices.Sort(want)
		if !slices.Equal(kept, want) {
			t.Errorf("%s: kept versions %v, want each of %v once", key, kept, want)
		}
	}
	if n, err := s1.CountRecords(ctx); err != nil || n != keys {
		t.Errorf("CountRecords = %d, %v; want %d", n, err, keys)
	}
}

// countingStore opens a migrated one-connection store whose round trips are
// counted, and a function returning the session's statements so far. One
// connection makes the session counter the store's own.
func countingStore(t *testing.T) (s *Store, trips *storetest.RoundTrips, questions func() int64) {
	t.Helper()
	dsn, trips := storetest.CountRoundTrips(storetest.NewDatabase(t))
	ctx := testCtx(t)
	db, err := Open(ctx, dsn, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s = New(db)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	questions = func() int64 {
		n, err := storetest.Questions(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return s, trips, questions
}

// The point of batching: in a flood, well under 1.2 statements and 0.5
// round trips per message (one transaction per message took 3 to 5
// statements and 4 to 8 round trips).
func TestInsertBatchStatementCount(t *testing.T) {
	t.Parallel()
	s, trips, questions := countingStore(t)
	ctx := testCtx(t)
	// The counter read itself: one statement.
	q0 := questions()
	self := questions() - q0

	measure := func(label string, evs []syncevent.Event, want []Outcome) {
		t.Helper()
		q0 := questions()
		t0 := trips.Load()
		wantOutcomes(t, label, batchOK(t, s, ctx, evs), want)
		rt := trips.Load() - t0
		stmts := questions() - q0 - self
		perStmt, perTrip := float64(stmts)/float64(len(evs)), float64(rt)/float64(len(evs))
		t.Logf("%s: %d events, %d statements (%.2f each), %d round trips (%.2f each)", label, len(evs), stmts, perStmt, rt, perTrip)
		if perStmt > 1.2 || perTrip > 0.5 {
			t.Errorf("%s: %.2f statements and %.2f round trips per event, want at most 1.2 and 0.5", label, perStmt, perTrip)
		}
	}

	var fresh []syncevent.Event
	var want []Outcome
	for i := range 16 {
		fresh = append(fresh, mustParse(t, fmt.Sprintf("n-%02d", i), fmt.Sprintf("m-%02d", i), body("P1", "n", "1")))
		want = append(want, Inserted)
	}
	measure("new records", fresh, want)

	// Half new, a quarter duplicates of other messages, a quarter
	// conflicts.
	var mixed []syncevent.Event
	want = want[:0]
	for i := range 16 {
		switch i % 4 {
		case 0, 1:
			mixed = append(mixed, mustParse(t, fmt.Sprintf("x-%02d", i), fmt.Sprintf("mx-%02d", i), body("P1", "n", "1")))
			want = append(want, Inserted)
		case 2:
			mixed = append(mixed, mustParse(t, fresh[i].Key, fmt.Sprintf("md-%02d", i), body("P1", "n", "1")))
			want = append(want, Duplicate)
		case 3:
			mixed = append(mixed, mustParse(t, fresh[i].Key, fmt.Sprintf("mc-%02d", i), body("P1", "changed", "1")))
			want = append(want, Conflict)
		}
	}
	measure("mixed", mixed, want)
}

// A batch is split into transactions that stay under the row and byte
// bounds, whatever the caller passes.
func TestInsertBatchSplitsLargeBatches(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	commits := 0
	s.beforeCommit = func(context.Context, *sql.Tx) error { commits++; return nil }
	defer func() { s.beforeCommit = nil }()

	var many []syncevent.Event
	for i := range maxBatchRows + 2 {
		many = append(many, mustParse(t, fmt.Sprintf("row-%04d", i), "m", body("P1", "n", "1")))
	}
	batchOK(t, s, ctx, many)
	if commits != 2 {
		t.Errorf("%d events in %d transactions, want 2 (at most %d rows each)", len(many), commits, maxBatchRows)
	}

	commits = 0
	var big []syncevent.Event
	for i := range 6 {
		ev := mustParse(t, fmt.Sprintf("big-%d", i), "m", body("P1", "n", "1"))
		ev.Payload = bytes.Repeat([]byte{'x'}, maxBatchBytes/3-1024) // three fit in one statement
		big = append(big, ev)
	}
	batchOK(t, s, ctx, big)
	if commits != 2 {
		t.Errorf("6 events of %d bytes in %d transactions, want 2 (at most %d bytes each)", len(big[0].Payload), commits, maxBatchBytes)
	}
	row, _, err := s.Record(ctx, "big-5")
	if err != nil || !bytes.Equal(row.Payload, big[5].Payload) {
		t.Errorf("large payload not stored intact (%v)", err)
	}
}

// With SingleStatementInserts, a new record costs one statement even when
// it travels alone (no other insert to share a transaction with): the
// multi-row INSERT commits itself. A duplicate adds the read; a conflict
// the read and its own short transaction. Outcomes are Insert's.
func TestSingleStatementInserts(t *testing.T) {
	t.Parallel()
	s, _, questions := countingStore(t)
	s.SingleStatementInserts = true
	ctx := testCtx(t)
	q0 := questions()
	self := questions() - q0
	cost := func(label string, ev syncevent.Event, want Outcome) int64 {
		t.Helper()
		q0 := questions()
		wantOutcomes(t, label, batchOK(t, s, ctx, []syncevent.Event{ev}), []Outcome{want})
		return questions() - q0 - self
	}
	if n := cost("new", mustParse(t, "k1", "m1", body("P1", "a", "1")), Inserted); n != 1 {
		t.Errorf("a new record alone took %d statements, want 1", n)
	}
	if n := cost("same message again", mustParse(t, "k1", "m1", body("P1", "a", "1")), Inserted); n != 2 {
		t.Errorf("a retried insert took %d statements, want 2", n)
	}
	if n := cost("duplicate", mustParse(t, "k1", "m2", body("P1", "a", "1")), Duplicate); n != 2 {
		t.Errorf("a duplicate took %d statements, want 2", n)
	}
	if n := cost("conflict", mustParse(t, "k1", "m3", body("P1", "b", "1")), Conflict); n != 5 {
		t.Errorf("a conflict took %d statements, want 5", n)
	}
	if hs := conflictHashes(t, s, ctx, "k1"); len(hs) != 1 {
		t.Errorf("%d conflicts recorded, want 1", len(hs))
	}
	// Events without a message ID cannot be told from older copies by
	// their rows: they take the transaction, and keep Insert's answers.
	anon := mustParse(t, "anon", "", body("P1", "a", "1"))
	wantOutcomes(t, "anonymous", batchOK(t, s, ctx, []syncevent.Event{anon, mustParse(t, "k1", "m4", body("P1", "a", "1"))}), []Outcome{Inserted, Duplicate})
	wantOutcomes(t, "anonymous again", batchOK(t, s, ctx, []syncevent.Event{anon}), []Outcome{Duplicate})
}

// A batch whose conflict write fails at COMMIT reports no outcome for any
// event, though its new rows were committed by the INSERT; the retry
// finds them as its own (Inserted) and records the conflict once.
func TestSingleStatementInsertsFailureAfterInsert(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	s.SingleStatementInserts = true
	admin := storetest.AdminDB(t)
	ctx := testCtx(t)
	if _, err := s.Insert(ctx, mustParse(t, "c", "m0", body("P1", "old", "1"))); err != nil {
		t.Fatal(err)
	}
	evs := []syncevent.Event{
		mustParse(t, "a", "m1", body("P1", "n", "1")),
		mustParse(t, "b", "m2", body("P1", "n", "1")),
		mustParse(t, "c", "m3", body("P1", "new", "1")),
	}
	s.beforeCommit = func(ctx context.Context, tx *sql.Tx) error {
		id, err := connectionID(ctx, tx)
		if err != nil {
			return err
		}
		return kill(ctx, admin, id)
	}
	res := s.InsertBatch(ctx, evs)
	s.beforeCommit = nil
	for i, r := range res {
		if r.Err == nil || r.Outcome != "" {
			t.Errorf("event %d: %v, %v; want an error and no outcome", i, r.Outcome, r.Err)
		}
	}
	wantOutcomes(t, "retry", batchOK(t, s, ctx, evs), []Outcome{Inserted, Inserted, Conflict})
	if n, err := s.CountRecords(ctx); err != nil || n != 3 {
		t.Errorf("CountRecords = %d, %v; want 3", n, err)
	}
	if hs := conflictHashes(t, s, ctx, "c"); len(hs) != 1 {
		t.Errorf("%d conflicts, want 1", len(hs))
	}
}
