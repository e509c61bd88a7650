package store

import (
	"strings"
	"testing"

	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// The quarantine row kept a key cut to 128 characters, and replay
// would have used it.
func TestQuarantineKeepsFullRawKey(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	for _, key := range []string{
		strings.Repeat("k", 1100),         // over Temporal's ID limit
		strings.Repeat("é", 200) + "\xff", // over the column, and not UTF-8
		"rec-1",
	} {
		id, err := s.Quarantine(ctx, QuarantineEntry{Key: key, MessageID: "M-" + key[:3], Reason: "key_too_long"})
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.QuarantineByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.RawKey) != key {
			t.Errorf("raw key %d bytes, sent %d", len(r.RawKey), len(key))
		}
		if got, ok := r.ExactKey(); !ok || got != key {
			t.Errorf("ExactKey = %d bytes, %t; want the %d-byte key", len(got), ok, len(key))
		}
		items, err := s.ListQuarantine(ctx, QuarantineFilter{AfterID: id - 1, Limit: 1, WithoutBody: true})
		if err != nil || len(items) != 1 || string(items[0].RawKey) != key {
			t.Errorf("ListQuarantine lost the raw key: %v", err)
		}
	}
}

func TestExactKeyOfRowsWithoutRawKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"rec-1", true},
		{strings.Repeat("k", qKeyChars-1), true},
		{strings.Repeat("k", qKeyChars), false}, // may have been cut
		{"rec-\uFFFD", false},                   // may have been an invalid byte
		{"", false},
	} {
		got, ok := QuarantineRow{Key: tc.key}.ExactKey()
		if ok != tc.ok || (ok && got != tc.key) {
			t.Errorf("ExactKey(%q) = %q, %t; want %t", tc.key, got, ok, tc.ok)
		}
	}
	if got, ok := (QuarantineRow{Key: "cut", RawKey: []byte("cut-and-more")}).ExactKey(); !ok || got != "cut-and-more" {
		t.Errorf("raw key not preferred: %q %t", got, ok)
	}
}

// Version 3 upgrades a database written by version 2, including one where
// a previous attempt added the column but died before recording the
// version; old rows keep working and are replayable only where exact.
func TestMigrateAddsRawKeyToExistingDatabase(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	// Back to version 2, with rows written by a version-2 binary.
	for _, q := range []string{
		"ALTER TABLE sync_quarantine DROP COLUMN raw_key",
		"DELETE FROM schema_migrations WHERE version = 3",
		"INSERT INTO sync_quarantine (local_record_id, message_id, reason) VALUES ('rec-old', 'M1', 'bad_json')",
		"INSERT INTO sync_quarantine (local_record_id, message_id, reason) VALUES ('" + strings.Repeat("k", qKeyChars) + "', 'M2', 'bad_json')",
	} {
		if _, err := s.DB.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate from version 2: %v", err)
	}
	// Half-applied: column there, version not recorded.
	if _, err := s.DB.ExecContext(ctx, "DELETE FROM schema_migrations WHERE version = 3"); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate of a half-applied version 3: %v", err)
	}
	var v int
	if err := s.DB.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&v); err != nil || v != SchemaVersion() {
		t.Fatalf("schema version %d, %v", v, err)
	}
	rows, err := s.ListQuarantine(ctx, QuarantineFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].RawKey != nil {
		t.Fatalf("old rows: %+v", rows)
	}
	if k, ok := rows[0].ExactKey(); !ok || k != "rec-old" {
		t.Errorf("short old key not replayable: %q %t", k, ok)
	}
	if _, ok := rows[1].ExactKey(); ok {
		t.Error("old 128-character key, possibly cut, reported exact")
	}
	// New rows get their raw key.
	id, err := s.Quarantine(ctx, QuarantineEntry{Key: "rec-new", MessageID: "M3", Reason: syncevent.ReasonBadJSON})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s.QuarantineByID(ctx, id); err != nil || string(r.RawKey) != "rec-new" {
		t.Fatalf("new row raw key %q, %v", r.RawKey, err)
	}
}
