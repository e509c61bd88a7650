package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
)

// Read side, for tests, the dev stack and operators. Times come back in UTC.

// Row is a stored patient record.
type Row struct {
	ID         int64
	Key        string
	MessageID  string // empty when unknown
	PatientID  string
	Notes      string
	DeviceTime time.Time // zero when unknown
	Payload    []byte
	Hash       string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// ConflictRow is an incoming version that differed from the stored record.
type ConflictRow struct {
	ID           int64
	Key          string
	MessageID    string
	Payload      []byte
	Hash         string // hash of Payload (the incoming version)
	ExistingHash string // hash of the stored record when the conflict was seen
	ReceivedAt   time.Time
	Status       string    // open, resolved_keep_existing or resolved_incoming
	ResolvedAt   time.Time // zero while open
}

// QuarantineRow is a quarantined message.
type QuarantineRow struct {
	ID  int64
	Key string // readable copy: at most 128 characters, invalid bytes replaced
	// RawKey is the key exactly as received; nil when it was not kept
	// (rows from before schema version 2, or a key over 64 KiB). Only
	// filled by ListQuarantine and QuarantineByID.
	RawKey        []byte
	MessageID     string
	Tag           string
	Reason        string
	Detail        string
	Body          []byte
	ConsumedTimes int64
	QuarantinedAt time.Time
	Status        string // quarantined, replay_requested, replayed or discarded
	StatusReason  string
}

// Record returns the stored record for key; false when there is none.
func (s *Store) Record(ctx context.Context, key string) (Row, bool, error) {
	var (
		r         Row
		msgID     sql.NullString
		notes     sql.NullString
		devTime   sql.NullTime
		createdAt time.Time
		updatedAt time.Time
	)
	err := s.DB.QueryRowContext(ctx, `SELECT id, local_record_id, message_id, patient_id, notes, device_time,
			payload, payload_hash, created_at, updated_at
		FROM patient_records WHERE local_record_id = ?`, key).
		Scan(&r.ID, &r.Key, &msgID, &r.PatientID, &notes, &devTime, &r.Payload, &r.Hash, &createdAt, &updatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Row{}, false, nil
	}
	if err != nil {
		return Row{}, false, wrap("read record", err)
	}
	r.MessageID, r.Notes = msgID.String, notes.String
	if devTime.Valid {
		r.DeviceTime = devTime.Time.UTC()
	}
	r.CreatedAt, r.UpdatedAt = createdAt.UTC(), updatedAt.UTC()
	return r, true, nil
}

// Conflicts returns the conflicting versions recorded for key, oldest first.
func (s *Store) Conflicts(ctx context.Context, key string) ([]ConflictRow, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT id, local_record_id, message_id, payload, payload_hash,
			existing_hash, received_at, status, resolved_at
		FROM sync_conflicts WHERE local_record_id = ? ORDER BY id`, key)
	if err != nil {
		return nil, wrap("read conflicts", err)
	}
	defer rows.Close()
	var out []ConflictRow
	for rows.Next() {
		var (
			c          ConflictRow
			msgID      sql.NullString
			resolvedAt sql.NullTime
		)
		if err := rows.Scan(&c.ID, &c.Key, &msgID, &c.Payload, &c.Hash, &c.ExistingHash,
			&c.ReceivedAt, &c.Status, &resolvedAt); err != nil {
			return nil, wrap("read conflicts", err)
		}
		c.MessageID, c.ReceivedAt = msgID.String, c.ReceivedAt.UTC()
		if resolvedAt.Valid {
			c.ResolvedAt = resolvedAt.Time.UTC()
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("read conflicts", err)
	}
	return out, nil
}

// ExactKey returns the message's key exactly as it was sent, and false when
// the row cannot reproduce it: the raw key was not kept and the readable
// copy may have been cut (128 characters) or had invalid bytes replaced.
// Replaying under an altered key would file the record under another ID.
func (q QuarantineRow) ExactKey() (string, bool) {
	if q.RawKey != nil {
		return string(q.RawKey), true
	}
	if q.Key == "" || utf8.RuneCountInString(q.Key) >= qKeyChars || strings.ContainsRune(q.Key, utf8.RuneError) {
		return "", false
	}
	return q.Key, true
}

// QuarantineRows returns every quarantined message, oldest first.
func (s *Store) QuarantineRows(ctx context.Context) ([]QuarantineRow, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT id, local_record_id, message_id, tag, reason, detail, body,
			consumed_times, quarantined_at, status, status_reason
		FROM sync_quarantine ORDER BY id`)
	if err != nil {
		return nil, wrap("read quarantine", err)
	}
	defer rows.Close()
	var out []QuarantineRow
	for rows.Next() {
		var (
			q                             QuarantineRow
			key, msgID, tag, statusReason sql.NullString
		)
		if err := rows.Scan(&q.ID, &key, &msgID, &tag, &q.Reason, &q.Detail, &q.Body,
			&q.ConsumedTimes, &q.QuarantinedAt, &q.Status, &statusReason); err != nil {
			return nil, wrap("read quarantine", err)
		}
		q.Key, q.MessageID, q.Tag, q.StatusReason = key.String, msgID.String, tag.String, statusReason.String
		q.QuarantinedAt = q.QuarantinedAt.UTC()
		out = append(out, q)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("read quarantine", err)
	}
	return out, nil
}

// CountRecords returns the number of stored patient records.
func (s *Store) CountRecords(ctx context.Context) (int, error) {
	var n int
	if err := s.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM patient_records").Scan(&n); err != nil {
		return 0, wrap("count records", err)
	}
	return n, nil
}
