package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"time"

	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// Flood mode settles a whole group of messages in bulk, exceptions
// included: conflicts and quarantines are written in the group's
// transactions together with a record notice each (the record_notices
// outbox, migration 4), so their messages can be acked right after COMMIT
// while the record workflows that show them in the Web UI are started
// afterwards, off the drain's path.

// Notice is a pending record notice: a conflict or quarantine stored in
// bulk whose key's record workflow has not been started yet.
type Notice struct {
	Key       string
	MessageID string
	Outcome   string // "conflict" or "quarantined"
	Reason    string // the quarantine reason; empty for a conflict
}

// ErrConflictWithoutNotice marks a conflict the bulk path met on its
// per-event fallback, which writes no notice: the caller must settle that
// message through its record workflow (which finds the conflict kept).
var ErrConflictWithoutNotice = errors.New("store: conflict stored without a record notice")

// FloodResult is what InsertFlood did.
type FloodResult struct {
	// Records has one result per event, as InsertBatch's. A Conflict
	// without error was stored with its notice.
	Records []BatchResult
	// Quarantine is nil when every quarantine entry is stored with its
	// notice (entries without a key get none: they have no record
	// workflow), else the error that stored none of them.
	Quarantine error
	// Notices are the notices written, for the caller to act on.
	Notices []Notice
}

// InsertFlood stores a flood group: evs as InsertBatch does, every
// conflict with its notice in the same transaction, and the group's
// quarantine entries with theirs in one more transaction. noticeDue is
// when another worker's sweep may take a notice over (ClaimNotices); the
// caller is expected to act on the returned notices before then. A zero
// noticeDue writes no notices (the benchmark's bulk ceiling).
//
// Entries of bad must have keys that fit the notice table exactly (at most
// 128 characters of valid UTF-8 without surrounding spaces) or no key at
// all: a key the column would cut or pad would name another record.
func (s *Store) InsertFlood(ctx context.Context, evs []syncevent.Event, bad []QuarantineEntry, noticeDue time.Time) FloodResult {
	var res FloodResult
	done := make(chan struct{})
	if len(bad) > 0 {
		// Its own transaction, concurrent with the records': it shares no
		// row with them.
		go func() {
			defer close(done)
			_, res.Quarantine = retryTx(ctx, s.onRetry, func() (struct{}, error) {
				return struct{}{}, s.quarantineBatch(ctx, bad, noticeDue)
			})
		}()
	} else {
		close(done)
	}
	res.Records = s.insertBatch(ctx, evs, noticeDue)
	<-done
	if noticeDue.IsZero() {
		return res
	}
	for i, r := range res.Records {
		if r.Err == nil && r.Outcome == Conflict {
			res.Notices = append(res.Notices, Notice{Key: evs[i].Key, MessageID: evs[i].MessageID, Outcome: string(Conflict)})
		}
	}
	if res.Quarantine == nil {
		for _, q := range bad {
			if q.Key != "" {
				res.Notices = append(res.Notices, Notice{Key: q.Key, MessageID: q.MessageID, Outcome: "quarantined", Reason: q.Reason})
			}
		}
	}
	return res
}

// quarantineBatch is one attempt at storing bad (and its notices) in one
// transaction, each entry as Quarantine would.
func (s *Store) quarantineBatch(ctx context.Context, bad []QuarantineEntry, noticeDue time.Time) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return wrap("quarantine batch: begin", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback() // the statement or commit error is the one to report
		}
	}()
	args := make([]any, 0, 8*len(bad))
	var notices []Notice
	for _, q := range bad {
		a, err := quarantineArgs(q)
		if err != nil {
			return err
		}
		args = append(args, a...)
		if q.Key != "" {
			notices = append(notices, Notice{Key: q.Key, MessageID: q.MessageID, Outcome: "quarantined", Reason: clip(q.Reason, qReasonChars)})
		}
	}
	if _, err := tx.ExecContext(ctx, quarantineBatchSQL(len(bad)), args...); err != nil {
		return wrap("quarantine batch", err)
	}
	if !noticeDue.IsZero() && len(notices) > 0 {
		if err := insertNotices(ctx, tx, notices, noticeDue); err != nil {
			return err
		}
	}
	if s.beforeCommit != nil {
		if err := s.beforeCommit(ctx, tx); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return wrap("quarantine batch: commit", err)
	}
	committed = true
	return nil
}

func quarantineBatchSQL(n int) string {
	return `INSERT INTO sync_quarantine
		(local_record_id, raw_key, message_id, tag, reason, detail, body, consumed_times)
		VALUES ` + repeatJoin("(?, ?, ?, ?, ?, ?, ?, ?)", n) + `
		ON DUPLICATE KEY UPDATE consumed_times = GREATEST(consumed_times, VALUES(consumed_times))`
}

func insertNotices(ctx context.Context, tx *sql.Tx, ns []Notice, due time.Time) error {
	args := make([]any, 0, 5*len(ns))
	for _, n := range ns {
		args = append(args, n.Key, n.MessageID, n.Outcome, n.Reason, due.UTC())
	}
	// A pending notice for the same message (a redelivery) stays as it is.
	q := `INSERT INTO record_notices (local_record_id, message_id, outcome, reason, due_at) VALUES ` +
		repeatJoin("(?, ?, ?, ?, ?)", len(ns)) + ` ON DUPLICATE KEY UPDATE id = id`
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return wrap("insert record notices", err)
	}
	return nil
}

// NoticeKeyFits reports whether key can be kept in a notice exactly: the
// column holds 128 characters and its collation pads trailing spaces.
func NoticeKeyFits(key, messageID string) bool {
	return key != "" && clip(key, qKeyChars) == key && len(messageID) > 0 && clip(messageID, qIDChars) == messageID &&
		key[len(key)-1] != ' ' && key[0] != ' '
}

// ClaimNotices takes up to limit notices whose due time has passed, for
// this caller alone until lease has passed again: a sweep of a worker that
// found notices another worker promised and never delivered (it died
// between its commit and the start).
func (s *Store) ClaimNotices(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Notice, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	claim := hex.EncodeToString(b[:])
	if _, err := s.DB.ExecContext(ctx,
		`UPDATE record_notices SET claim = ?, due_at = ? WHERE due_at <= ? ORDER BY due_at LIMIT ?`,
		claim, now.Add(lease).UTC(), now.UTC(), limit); err != nil {
		return nil, wrap("claim record notices", err)
	}
	rows, err := s.DB.QueryContext(ctx,
		`SELECT local_record_id, message_id, outcome, reason FROM record_notices WHERE claim = ? ORDER BY id`, claim)
	if err != nil {
		return nil, wrap("claim record notices: read", err)
	}
	defer rows.Close()
	var out []Notice
	for rows.Next() {
		var n Notice
		if err := rows.Scan(&n.Key, &n.MessageID, &n.Outcome, &n.Reason); err != nil {
			return nil, wrap("claim record notices: read", err)
		}
		out = append(out, n)
	}
	return out, wrap("claim record notices: read", rows.Err())
}

// DeleteNotices removes delivered notices (their record workflows exist).
func (s *Store) DeleteNotices(ctx context.Context, ns []Notice) error {
	const perStmt = 200
	for len(ns) > 0 {
		chunk := ns[:min(perStmt, len(ns))]
		ns = ns[len(chunk):]
		args := make([]any, 0, 3*len(chunk))
		for _, n := range chunk {
			args = append(args, n.Key, n.MessageID, n.Outcome)
		}
		// Deletes meet the groups' notice inserts in the unique index; a
		// deadlock between them is retried rather than left to a sweep.
		_, err := retryTx(ctx, s.onRetry, func() (sql.Result, error) {
			return s.DB.ExecContext(ctx,
				`DELETE FROM record_notices WHERE (local_record_id, message_id, outcome) IN (`+repeatJoin("(?, ?, ?)", len(chunk))+`)`,
				args...)
		})
		if err != nil {
			return wrap("delete record notices", err)
		}
	}
	return nil
}

// PendingNotices counts notices not yet delivered, and how many of them are
// past their due time (promised by a worker that did not deliver them).
func (s *Store) PendingNotices(ctx context.Context, now time.Time) (pending, overdue int64, err error) {
	err = s.DB.QueryRowContext(ctx,
		`SELECT COUNT(*), COALESCE(SUM(due_at <= ?), 0) FROM record_notices`, now.UTC()).Scan(&pending, &overdue)
	return pending, overdue, wrap("count record notices", err)
}
