package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// Operator side: what reconciliation, quarantine replay and conflict
// resolution read and change. Nothing here deletes a row: quarantine rows
// and conflicts change status (with a reason and a timestamp), and a stored
// record replaced by a conflict resolution is kept in sync_conflicts.

// ErrNotFound is returned when the quarantine row or conflict named does
// not exist.
var ErrNotFound = errors.New("store: no such entry")

// ErrWrongState is returned for a status change the row's current status
// does not allow (e.g. discarding a replayed row).
var ErrWrongState = errors.New("store: entry is not in a state that allows this")

// Quarantine and conflict statuses, as stored.
const (
	QuarantineQuarantined     = "quarantined"
	QuarantineReplayRequested = "replay_requested"
	QuarantineReplayed        = "replayed"
	QuarantineDiscarded       = "discarded"

	ConflictOpen                 = "open"
	ConflictResolvedKeepExisting = "resolved_keep_existing"
	ConflictResolvedIncoming     = "resolved_incoming"
)

// QuarantineItem is a quarantine row with the time of its last status
// change.
type QuarantineItem struct {
	QuarantineRow
	UpdatedAt time.Time
}

// QuarantineFilter selects quarantine rows. Zero fields select everything.
type QuarantineFilter struct {
	Status  string
	Key     string
	AfterID int64 // rows with a greater ID, for paging
	Limit   int   // 0 means no limit
	// WithoutBody leaves Body nil (listing many rows).
	WithoutBody bool
}

// ListQuarantine returns quarantine rows matching f, by ID.
func (s *Store) ListQuarantine(ctx context.Context, f QuarantineFilter) ([]QuarantineItem, error) {
	body := "body"
	if f.WithoutBody {
		body = "NULL"
	}
	q := `SELECT id, local_record_id, raw_key, message_id, tag, reason, detail, ` + body + `,
			consumed_times, quarantined_at, status, status_reason, updated_at
		FROM sync_quarantine`
	return listByID(ctx, s.DB, "list quarantine", q, listFilter{f.AfterID, f.Status, f.Key, f.Limit}, scanQuarantine)
}

// listFilter is the filter every operator listing shares.
type listFilter struct {
	afterID     int64
	status, key string
	limit       int
}

// listByID pages through an operator table by ID: base is a SELECT ... FROM
// without a WHERE clause.
func listByID[T any](ctx context.Context, db *sql.DB, op, base string, f listFilter, scan func(scanner) (T, error)) ([]T, error) {
	q := base + " WHERE id > ?"
	args := []any{f.afterID}
	if f.status != "" {
		q += " AND status = ?"
		args = append(args, f.status)
	}
	if f.key != "" {
		q += " AND local_record_id = ?"
		args = append(args, f.key)
	}
	q += " ORDER BY id"
	if f.limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.limit)
	}
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		it, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanQuarantine(r scanner) (QuarantineItem, error) {
	var (
		it                            QuarantineItem
		key, msgID, tag, statusReason sql.NullString
	)
	q := &it.QuarantineRow
	if err := r.Scan(&q.ID, &key, &q.RawKey, &msgID, &tag, &q.Reason, &q.Detail, &q.Body,
		&q.ConsumedTimes, &q.QuarantinedAt, &q.Status, &statusReason, &it.UpdatedAt); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return it, ErrNotFound
		}
		return it, wrap("read quarantine", err)
	}
	q.Key, q.MessageID, q.Tag, q.StatusReason = key.String, msgID.String, tag.String, statusReason.String
	q.QuarantinedAt, it.UpdatedAt = q.QuarantinedAt.UTC(), it.UpdatedAt.UTC()
	return it, nil
}

// QuarantineByID returns one quarantine row; ErrNotFound if there is none.
func (s *Store) QuarantineByID(ctx context.Context, id int64) (QuarantineItem, error) {
	return scanQuarantine(s.DB.QueryRowContext(ctx, `SELECT id, local_record_id, raw_key, message_id, tag, reason, detail, body,
			consumed_times, quarantined_at, status, status_reason, updated_at
		FROM sync_quarantine WHERE id = ?`, id))
}

// RequestReplay marks a quarantine row replay_requested with note as its
// status reason. A row already replay_requested keeps its status (the note
// is updated); changed is false and the row is returned unchanged when it
// was already replayed or discarded.
func (s *Store) RequestReplay(ctx context.Context, id int64, note string) (item QuarantineItem, changed bool, err error) {
	res, err := s.DB.ExecContext(ctx, `UPDATE sync_quarantine SET status = ?, status_reason = ?
		WHERE id = ? AND status IN (?, ?)`,
		QuarantineReplayRequested, clip(note, qDetailChars), id, QuarantineQuarantined, QuarantineReplayRequested)
	if err != nil {
		return item, false, wrap("request replay", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return item, false, wrap("request replay", err)
	}
	item, err = s.QuarantineByID(ctx, id)
	if err != nil {
		return item, false, err
	}
	// n is 0 also when the note did not change; the status tells.
	return item, n > 0 || item.Status == QuarantineReplayRequested, nil
}

// FinishReplay settles a replay_requested row: replayed when the record
// landed (inserted, duplicate or conflict), back to quarantined when the
// replay was quarantined again. A row no longer replay_requested is left
// as it is and its status returned (a repeated finish is a no-op).
func (s *Store) FinishReplay(ctx context.Context, id int64, landed bool, note string) (status string, err error) {
	to := QuarantineQuarantined
	if landed {
		to = QuarantineReplayed
	}
	if _, err := s.DB.ExecContext(ctx, `UPDATE sync_quarantine SET status = ?, status_reason = ?
		WHERE id = ? AND status = ?`, to, clip(note, qDetailChars), id, QuarantineReplayRequested); err != nil {
		return "", wrap("finish replay", err)
	}
	if err := s.DB.QueryRowContext(ctx, `SELECT status FROM sync_quarantine WHERE id = ?`, id).Scan(&status); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", ErrNotFound
		}
		return "", wrap("finish replay", err)
	}
	return status, nil
}

// Discard marks a quarantine row discarded with reason. Discarding a
// discarded row is a no-op (changed false); a replayed row cannot be
// discarded (ErrWrongState): its record is stored.
func (s *Store) Discard(ctx context.Context, id int64, reason string) (item QuarantineItem, changed bool, err error) {
	if strings.TrimSpace(reason) == "" {
		return item, false, errors.New("store: discard: a reason is required")
	}
	res, err := s.DB.ExecContext(ctx, `UPDATE sync_quarantine SET status = ?, status_reason = ?
		WHERE id = ? AND status IN (?, ?)`,
		QuarantineDiscarded, clip(reason, qDetailChars), id, QuarantineQuarantined, QuarantineReplayRequested)
	if err != nil {
		return item, false, wrap("discard", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return item, false, wrap("discard", err)
	}
	item, err = s.QuarantineByID(ctx, id)
	if err != nil {
		return item, false, err
	}
	if n == 0 && item.Status == QuarantineReplayed {
		return item, false, fmt.Errorf("quarantine row %d was replayed: %w", id, ErrWrongState)
	}
	return item, n > 0, nil
}

// KeyState is what the database holds for one key, for reconciliation.
type KeyState struct {
	Stored      bool // a patient_records row exists
	Quarantined bool // at least one quarantine row names the key
}

// KeyState reports whether key's record is committed or quarantined.
func (s *Store) KeyState(ctx context.Context, key string) (KeyState, error) {
	var st KeyState
	err := s.DB.QueryRowContext(ctx, `SELECT
			EXISTS(SELECT 1 FROM patient_records WHERE local_record_id = ?),
			EXISTS(SELECT 1 FROM sync_quarantine WHERE local_record_id = ?)`, key, key).
		Scan(&st.Stored, &st.Quarantined)
	if err != nil {
		return st, wrap("key state", err)
	}
	return st, nil
}

// ConflictFilter selects conflicts. Zero fields select everything.
type ConflictFilter struct {
	Status  string
	Key     string
	AfterID int64
	Limit   int
	// WithoutPayload leaves Payload nil.
	WithoutPayload bool
}

// ListConflicts returns conflicts matching f, by ID.
func (s *Store) ListConflicts(ctx context.Context, f ConflictFilter) ([]ConflictRow, error) {
	payload := "payload"
	if f.WithoutPayload {
		payload = "NULL"
	}
	q := `SELECT id, local_record_id, message_id, ` + payload + `, payload_hash, existing_hash,
			received_at, status, resolved_at
		FROM sync_conflicts`
	return listByID(ctx, s.DB, "list conflicts", q, listFilter{f.AfterID, f.Status, f.Key, f.Limit}, scanConflict)
}

func scanConflict(r scanner) (ConflictRow, error) {
	var (
		c          ConflictRow
		msgID      sql.NullString
		resolvedAt sql.NullTime
	)
	if err := r.Scan(&c.ID, &c.Key, &msgID, &c.Payload, &c.Hash, &c.ExistingHash,
		&c.ReceivedAt, &c.Status, &resolvedAt); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return c, ErrNotFound
		}
		return c, wrap("read conflict", err)
	}
	c.MessageID, c.ReceivedAt = msgID.String, c.ReceivedAt.UTC()
	if resolvedAt.Valid {
		c.ResolvedAt = resolvedAt.Time.UTC()
	}
	return c, nil
}

// ConflictByID returns one conflict; ErrNotFound if there is none.
func (s *Store) ConflictByID(ctx context.Context, id int64) (ConflictRow, error) {
	return scanConflict(s.DB.QueryRowContext(ctx, `SELECT id, local_record_id, message_id, payload, payload_hash,
			existing_hash, received_at, status, resolved_at
		FROM sync_conflicts WHERE id = ?`, id))
}

// Resolution is what ResolveConflict did.
type Resolution struct {
	Status  string // the conflict's status afterwards
	Changed bool   // false: it was already resolved, nothing changed
	// ReplacedHash is the hash of the stored version replaced by the
	// incoming one; that version is kept in sync_conflicts.
	ReplacedHash string
}

// ResolveConflict settles conflict id of key in one transaction. With
// keepIncoming false the stored record stays and the conflict is marked
// resolved_keep_existing. With keepIncoming true the record's payload,
// patient fields and hash are replaced by the conflict's, the replaced
// version is recorded in sync_conflicts (resolved_incoming, its
// existing_hash naming the version that replaced it) so nothing is lost,
// and the conflict is marked resolved_incoming. A conflict that is no
// longer open is left alone: Changed is false.
func (s *Store) ResolveConflict(ctx context.Context, key string, id int64, keepIncoming bool) (res Resolution, err error) {
	for attempt := 1; ; attempt++ {
		res, err = s.resolveOnce(ctx, key, id, keepIncoming)
		if err == nil || !isDeadlock(err) || attempt == maxInsertAttempts {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(time.Duration(attempt) * deadlockBackoff):
		}
	}
}

func (s *Store) resolveOnce(ctx context.Context, key string, id int64, keepIncoming bool) (Resolution, error) {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return Resolution{}, wrap("resolve: begin", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()

	c, err := scanConflict(tx.QueryRowContext(ctx, `SELECT id, local_record_id, message_id, payload, payload_hash,
			existing_hash, received_at, status, resolved_at
		FROM sync_conflicts WHERE id = ? AND local_record_id = ? FOR UPDATE`, id, key))
	if err != nil {
		return Resolution{}, err
	}
	if c.Status != ConflictOpen {
		return Resolution{Status: c.Status}, nil
	}

	res := Resolution{Status: ConflictResolvedKeepExisting, Changed: true}
	if keepIncoming {
		res.Status = ConflictResolvedIncoming
		ev, err := syncevent.Parse(key, c.MessageID, c.Payload)
		if err != nil {
			return Resolution{}, fmt.Errorf("store: resolve: conflict %d payload does not parse: %w", id, err)
		}
		var (
			oldMsgID   sql.NullString
			oldPayload []byte
			oldHash    string
		)
		err = tx.QueryRowContext(ctx, `SELECT message_id, payload, payload_hash FROM patient_records
			WHERE local_record_id = ? FOR UPDATE`, key).Scan(&oldMsgID, &oldPayload, &oldHash)
		if errors.Is(err, sql.ErrNoRows) {
			return Resolution{}, fmt.Errorf("store: resolve: no stored record for key of conflict %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return Resolution{}, wrap("resolve: read record", err)
		}
		res.ReplacedHash = oldHash
		if oldHash != c.Hash {
			// Keep the replaced version first: if it was seen as a
			// conflict before, that row already holds it.
			if _, err := tx.ExecContext(ctx, `INSERT INTO sync_conflicts
					(local_record_id, message_id, payload, payload_hash, existing_hash, status, resolved_at)
					VALUES (?, ?, ?, ?, ?, ?, NOW(3))
					ON DUPLICATE KEY UPDATE id = id`,
				key, oldMsgID, oldPayload, oldHash, c.Hash, ConflictResolvedIncoming); err != nil {
				return Resolution{}, wrap("resolve: keep replaced version", err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE patient_records SET message_id = ?, patient_id = ?, notes = ?,
					device_time = ?, payload = ?, payload_hash = ? WHERE local_record_id = ?`,
				nullString(c.MessageID), ev.PatientID, ev.Notes, nullTime(ev.DeviceTime), c.Payload, c.Hash, key); err != nil {
				return Resolution{}, wrap("resolve: replace record", err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE sync_conflicts SET status = ?, resolved_at = NOW(3) WHERE id = ?`,
		res.Status, id); err != nil {
		return Resolution{}, wrap("resolve: mark conflict", err)
	}
	if err := tx.Commit(); err != nil {
		return Resolution{}, wrap("resolve: commit", err)
	}
	committed = true
	return res, nil
}
