package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncbridge/syncbridge/internal/store/storetest"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newStore opens a fresh, migrated database for one test.
func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	dsn := storetest.NewDatabase(t)
	db, err := Open(testCtx(t), dsn, 0)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s := New(db)
	if err := s.Migrate(testCtx(t)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s, dsn
}

func mustParse(t testing.TB, key, msgID, body string) syncevent.Event {
	t.Helper()
	ev, err := syncevent.Parse(key, msgID, []byte(body))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return ev
}

func body(patientID, notes, ts string) string {
	return fmt.Sprintf(`{"patientData":{"patientId":%q,"notes":%q},"deviceTimestamp":%s}`, patientID, notes, ts)
}

func TestNewPanicsOnNil(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("New(nil) did not panic")
		}
	}()
	New(nil)
}

func TestOpenSessionSettings(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	var mode, tz string
	if err := s.DB.QueryRowContext(ctx, "SELECT @@SESSION.sql_mode, @@SESSION.time_zone").Scan(&mode, &tz); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(mode, "STRICT_ALL_TABLES") || tz != "+00:00" {
		t.Errorf("session sql_mode=%q time_zone=%q, want strict and UTC", mode, tz)
	}
	if got := s.DB.Stats().MaxOpenConnections; got != DefaultMaxOpenConns {
		t.Errorf("MaxOpenConnections = %d, want %d", got, DefaultMaxOpenConns)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	if _, err := Open(ctx, "not a dsn", 1); err == nil {
		t.Error("Open accepted a malformed DSN")
	}
	// Port 1 on loopback: nothing listens, so the dial is refused.
	_, err := Open(ctx, "root:s3cret-pw@tcp(127.0.0.1:1)/x", 1)
	if err == nil {
		t.Fatal("Open to a closed port succeeded")
	}
	if !IsTransient(err) {
		t.Errorf("refused connection not transient: %v", err)
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	for range 2 {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("repeated Migrate: %v", err)
		}
	}
	var n, maxV int
	if err := s.DB.QueryRowContext(ctx, "SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &maxV); err != nil {
		t.Fatal(err)
	}
	if n != len(migrations) || maxV != SchemaVersion() {
		t.Errorf("schema_migrations has %d rows up to %d, want %d up to %d", n, maxV, len(migrations), SchemaVersion())
	}
	for _, table := range []string{"patient_records", "sync_conflicts", "sync_quarantine"} {
		var engine, collation string
		err := s.DB.QueryRowContext(ctx, `SELECT ENGINE, TABLE_COLLATION FROM information_schema.TABLES
			WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`, table).Scan(&engine, &collation)
		if err != nil {
			t.Fatalf("table %s: %v", table, err)
		}
		if engine != "InnoDB" || !strings.HasPrefix(collation, "utf8mb4") {
			t.Errorf("table %s: engine %s collation %s", table, engine, collation)
		}
	}
}

// Several workers starting at once, each with its own pool, must all
// succeed and leave one row per version.
func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	dsn := storetest.NewDatabase(t)
	ctx := testCtx(t)
	const workers = 6
	stores := make([]*Store, workers)
	for i := range stores {
		db, err := Open(ctx, dsn, 2)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		stores[i] = New(db)
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.Migrate(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
	}
	var n int
	if err := stores[0].DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(migrations) {
		t.Errorf("%d schema_migrations rows, want %d", n, len(migrations))
	}
	ev := mustParse(t, "k1", "m1", body("P1", "n", "1"))
	if out, err := stores[workers-1].Insert(ctx, ev); err != nil || out != Inserted {
		t.Errorf("Insert after concurrent migrate = %v, %v", out, err)
	}
}

func TestMigrateRejectsUnsafeSessions(t *testing.T) {
	t.Parallel()
	dsn := storetest.NewDatabase(t)
	ctx := testCtx(t)
	cases := []struct {
		name, params string
		check        func(error) bool
	}{
		{"clientFoundRows", "?clientFoundRows=true&sql_mode=%27STRICT_ALL_TABLES%27",
			func(err error) bool { return errors.Is(err, ErrClientFoundRows) }},
		{"non-strict sql_mode", "?sql_mode=%27%27",
			func(err error) bool { return err != nil && strings.Contains(err.Error(), "not strict") }},
	}
	for _, tc := range cases {
		// sql.Open with a raw DSN: the misconfiguration store.Open prevents.
		db, err := sql.Open("mysql", dsn+tc.params)
		if err != nil {
			t.Fatal(err)
		}
		err = New(db).Migrate(ctx)
		_ = db.Close()
		if !tc.check(err) {
			t.Errorf("%s: Migrate error = %v", tc.name, err)
		}
	}
}

func TestInsertOutcomes(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	const key = "clinic07-dev2-000042"
	orig := mustParse(t, key, "MSG-1", body("P0042", "Zoë Müller: fever 38.5 °C 🩺", `"2025-03-03T10:15:30.123+02:00"`))

	steps := []struct {
		name string
		ev   syncevent.Event
		want Outcome
	}{
		{"first", orig, Inserted},
		// The same message again (e.g. its first COMMIT reply was lost):
		// the row is its own, so the truthful outcome is Inserted.
		{"same message again", orig, Inserted},
		// Same content re-serialised by the device, new message ID.
		{"reserialised", mustParse(t, key, "MSG-2", `{"deviceTimestamp":"2025-03-03T10:15:30.123+02:00","patientData":{"notes":"Zoë Müller: fever 38.5 °C 🩺","patientId":"P0042"}}`), Duplicate},
		{"changed", mustParse(t, key, "MSG-3", body("P0042", "amended", `"2025-03-03T10:15:30.123+02:00"`)), Conflict},
		{"changed redelivered", mustParse(t, key, "MSG-3", body("P0042", "amended", `"2025-03-03T10:15:30.123+02:00"`)), Conflict},
		{"changed again", mustParse(t, key, "MSG-4", body("P0042", "amended twice", `"2025-03-03T10:15:30.123+02:00"`)), Conflict},
		// Without a message ID a copy cannot be told from the original.
		{"same content, no message ID", mustParse(t, key, "", body("P0042", "Zoë Müller: fever 38.5 °C 🩺", `"2025-03-03T10:15:30.123+02:00"`)), Duplicate},
	}
	for _, st := range steps {
		out, err := s.Insert(ctx, st.ev)
		if err != nil || out != st.want {
			t.Fatalf("%s: Insert = %q, %v; want %q", st.name, out, err, st.want)
		}
	}

	row, ok, err := s.Record(ctx, key)
	if err != nil || !ok {
		t.Fatalf("Record: %v %v", ok, err)
	}
	if row.Hash != orig.Hash || !bytes.Equal(row.Payload, orig.Payload) || row.MessageID != "MSG-1" ||
		row.PatientID != orig.PatientID || row.Notes != orig.Notes || !row.DeviceTime.Equal(orig.DeviceTime) {
		t.Errorf("stored record changed or wrong: %+v", row)
	}
	if d := time.Since(row.CreatedAt); d < -time.Minute || d > time.Minute || row.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt %v is not now in UTC", row.CreatedAt)
	}

	conflicts, err := s.Conflicts(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(conflicts) != 2 {
		t.Fatalf("%d conflicts, want 2 (one per distinct incoming version): %+v", len(conflicts), conflicts)
	}
	c := conflicts[0]
	if c.MessageID != "MSG-3" || c.Hash != steps[3].ev.Hash || c.ExistingHash != orig.Hash ||
		!bytes.Equal(c.Payload, steps[3].ev.Payload) || c.Status != "open" || !c.ResolvedAt.IsZero() {
		t.Errorf("conflict row: %+v", c)
	}
	if n, err := s.CountRecords(ctx); err != nil || n != 1 {
		t.Errorf("CountRecords = %d, %v", n, err)
	}
}

// Keys compare byte for byte: case or trailing accents make another record.
func TestInsertKeysAreBinary(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	for _, key := range []string{"rec-a", "REC-A", "rec-á", "rec-a\u0301"} {
		out, err := s.Insert(ctx, mustParse(t, key, "", body("P1", "", "1")))
		if err != nil || out != Inserted {
			t.Errorf("key %q: %v %v", key, out, err)
		}
	}
}

func TestInsertIncompleteEvent(t *testing.T) {
	t.Parallel()
	s := New(&sql.DB{}) // never reached: validation comes first
	_, err := s.Insert(context.Background(), syncevent.Event{Key: "k"})
	if !errors.Is(err, ErrIncompleteEvent) || !IsBadData(err) || IsTransient(err) {
		t.Errorf("Insert(incomplete) = %v", err)
	}
}

// Many workers racing on the same keys, with two competing versions per
// key: exactly one Inserted per key, every other call a Duplicate (same
// version as the winner) or Conflict (the other version), and the loser's
// version recorded once.
func TestInsertConcurrentSameKey(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	const goroutines, keys = 20, 50
	versions := make([][2]syncevent.Event, keys)
	for k := range keys {
		key := fmt.Sprintf("race-%03d", k)
		for v := range 2 {
			versions[k][v] = mustParse(t, key, fmt.Sprintf("m-%d-%d", k, v), body("P1", fmt.Sprintf("version %d", v), "1740989730123"))
		}
	}
	type result struct {
		out     Outcome
		version int
	}
	results := make([][]result, keys)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errc := make(chan error, goroutines*keys)
	for g := range goroutines {
		wg.Go(func() {
			for i := range keys {
				k := (i*7 + g*13) % keys // each goroutine walks the keys in its own order
				// Each goroutine is another delivery with its own message
				// ID, so only the one that stored the row gets Inserted.
				ev := versions[k][g%2]
				ev.MessageID = fmt.Sprintf("%s-g%d", ev.MessageID, g)
				out, err := s.Insert(ctx, ev)
				if err != nil {
					errc <- fmt.Errorf("goroutine %d key %d: %w", g, k, err)
					continue
				}
				mu.Lock()
				results[k] = append(results[k], result{out, g % 2})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	for k, rs := range results {
		winner, inserted := -1, 0
		for _, r := range rs {
			if r.out == Inserted {
				inserted++
				winner = r.version
			}
		}
		if inserted != 1 {
			t.Fatalf("key %d: %d Inserted, want exactly 1", k, inserted)
		}
		for _, r := range rs {
			want := Duplicate
			if r.version != winner {
				want = Conflict
			}
			if r.out != want && r.out != Inserted {
				t.Errorf("key %d version %d: %s, want %s", k, r.version, r.out, want)
			}
		}
		row, ok, err := s.Record(ctx, versions[k][0].Key)
		if err != nil || !ok || row.Hash != versions[k][winner].Hash {
			t.Errorf("key %d: stored row is not the winner's version (%v %v)", k, ok, err)
		}
		conflicts, err := s.Conflicts(ctx, versions[k][0].Key)
		if err != nil || len(conflicts) != 1 || conflicts[0].Hash != versions[k][1-winner].Hash {
			t.Errorf("key %d: conflicts %+v, %v; want the loser's version once", k, conflicts, err)
		}
	}
	if n, err := s.CountRecords(ctx); err != nil || n != keys {
		t.Errorf("CountRecords = %d, %v; want %d", n, err, keys)
	}
}

func TestQuarantineIdempotent(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	q := QuarantineEntry{Key: "rec-1", MessageID: "MSG-9", Tag: syncevent.Tag, Reason: syncevent.ReasonBadTimestamp,
		Detail: "deviceTimestamp: unparseable", Body: []byte("{\"x\":\"\xff\"}"), ConsumedTimes: 1}
	id1, err := s.Quarantine(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	q.ConsumedTimes = 3 // redelivered twice more
	id2, err := s.Quarantine(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if id1 == 0 || id1 != id2 {
		t.Errorf("redelivery got id %d, first %d", id2, id1)
	}
	q.ConsumedTimes = 2 // an older, late copy must not lower the count
	if id3, err := s.Quarantine(ctx, q); err != nil || id3 != id1 {
		t.Errorf("third Quarantine = %d, %v", id3, err)
	}
	// Another reason for the same message is another entry.
	other := q
	other.Reason = "db_bad_data"
	idOther, err := s.Quarantine(ctx, other)
	if err != nil || idOther == id1 {
		t.Errorf("other reason: id %d (first %d), %v", idOther, id1, err)
	}
	// Malformed metadata is clipped, not refused: quarantine is where bad data goes.
	messy := QuarantineEntry{Key: strings.Repeat("k", 300) + "\xff", Reason: syncevent.ReasonInvalidUTF8,
		Detail: strings.Repeat("d", 5000), Tag: "\xfe"}
	if _, err := s.Quarantine(ctx, messy); err != nil {
		t.Errorf("messy entry: %v", err)
	}
	if _, err := s.Quarantine(ctx, QuarantineEntry{MessageID: "x"}); err == nil {
		t.Error("entry without reason accepted")
	}

	rows, err := s.QuarantineRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d quarantine rows, want 3: %+v", len(rows), rows)
	}
	r := rows[0]
	if r.ID != id1 || r.Key != q.Key || r.MessageID != q.MessageID || r.Tag != q.Tag || r.Reason != q.Reason ||
		r.Detail != q.Detail || !bytes.Equal(r.Body, q.Body) || r.ConsumedTimes != 3 || r.Status != "quarantined" {
		t.Errorf("quarantine row: %+v", r)
	}
	if n := len([]rune(rows[2].Key)); n != qKeyChars || len(rows[2].Detail) != qDetailChars {
		t.Errorf("messy row not clipped: key %d chars, detail %d", n, len(rows[2].Detail))
	}
}

// The batch generator drives the whole contract: every kind of message,
// then the whole batch redelivered.
func TestGeneratedBatchTwice(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	o := syncevent.GenOptions{Count: 240, DistinctKeys: 150, ChangedRate: 0.4, BadRate: 0.1, Seed: 11, KeyPrefix: "gen/"}
	msgs := syncevent.Generate(o)
	newN, _, _, badN := syncevent.GenCounts(o)
	for round := range 2 {
		for i, m := range msgs {
			msgID := fmt.Sprintf("MSG-%05d", i)
			ev, err := syncevent.Parse(m.Key, msgID, m.Body)
			if err != nil {
				var ie *syncevent.InvalidError
				if !errors.As(err, &ie) || m.Kind != syncevent.KindBadPrefix+ie.Reason {
					t.Fatalf("message %d (%s): %v", i, m.Kind, err)
				}
				if _, err := s.Quarantine(ctx, QuarantineEntry{Key: m.Key, MessageID: msgID, Tag: m.Tag,
					Reason: ie.Reason, Detail: ie.Detail, Body: m.Body, ConsumedTimes: int64(round + 1)}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			out, err := s.Insert(ctx, ev)
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			want := map[string]Outcome{syncevent.KindNew: Inserted, syncevent.KindDup: Duplicate, syncevent.KindChanged: Conflict}[m.Kind]
			// Round 1 redelivers with the same message IDs: a new
			// record's row is its own, so it stays Inserted.
			if out != want {
				t.Fatalf("round %d message %d (%s): %s, want %s", round, i, m.Kind, out, want)
			}
		}
		if n, err := s.CountRecords(ctx); err != nil || n != newN {
			t.Errorf("round %d: %d records, %v; want %d", round, n, err, newN)
		}
		if q, err := s.QuarantineRows(ctx); err != nil || len(q) != badN {
			t.Errorf("round %d: %d quarantine rows, %v; want %d", round, len(q), err, badN)
		}
	}
}
