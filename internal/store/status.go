package store

import (
	"context"
	"database/sql"
	"time"
)

// What `starter status` reads from the database: the work waiting for a
// person (open conflicts, quarantine by reason) and the commit rate. Counts
// only, never payloads.

// QuarantineCount is the number of quarantine rows waiting for a person
// (quarantined or replay_requested) with one reason. Keyless rows (no
// MessageKey: no record workflow exists for them, so the Web UI cannot
// show them) are counted apart.
type QuarantineCount struct {
	Reason  string
	Keyless bool
	Count   int64
	Oldest  time.Time
}

// OpenQuarantine counts the quarantine rows still waiting, by reason and
// keylessness, most numerous first.
func (s *Store) OpenQuarantine(ctx context.Context) ([]QuarantineCount, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT reason, local_record_id IS NULL OR local_record_id = '' AS keyless,
			COUNT(*), MIN(quarantined_at)
		FROM sync_quarantine WHERE status IN (?, ?)
		GROUP BY reason, keyless ORDER BY COUNT(*) DESC, reason, keyless`,
		QuarantineQuarantined, QuarantineReplayRequested)
	if err != nil {
		return nil, wrap("count quarantine", err)
	}
	defer rows.Close()
	var out []QuarantineCount
	for rows.Next() {
		var c QuarantineCount
		if err := rows.Scan(&c.Reason, &c.Keyless, &c.Count, &c.Oldest); err != nil {
			return nil, wrap("count quarantine", err)
		}
		c.Oldest = c.Oldest.UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("count quarantine", err)
	}
	return out, nil
}

// OpenConflicts counts open conflicts, the keys they concern and the
// oldest one's arrival (zero when there is none).
func (s *Store) OpenConflicts(ctx context.Context) (n, keys int64, oldest time.Time, err error) {
	var old sql.NullTime
	err = s.DB.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT local_record_id), MIN(received_at)
		FROM sync_conflicts WHERE status = ?`, ConflictOpen).Scan(&n, &keys, &old)
	if err != nil {
		return 0, 0, time.Time{}, wrap("count conflicts", err)
	}
	if old.Valid {
		oldest = old.Time.UTC()
	}
	return n, keys, oldest, nil
}

// RecordsStoredSince counts records first stored at or after t (the
// database's clock): inserts, not duplicates or conflicts.
func (s *Store) RecordsStoredSince(ctx context.Context, t time.Time) (int64, error) {
	var n int64
	err := s.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM patient_records WHERE created_at >= ?`, t.UTC()).Scan(&n)
	if err != nil {
		return 0, wrap("count stored records", err)
	}
	return n, nil
}
