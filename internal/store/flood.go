package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// Flood mode settles a whole group of messages in bulk, exceptions
// included: conflicts and quarantines are written in the group's
// transactions together with their record notices (the outbox), so their
// messages can be acked right after COMMIT while the runs that show them in
// the Web UI are started afterwards, off the drain's path.
//
// The outbox is notice_batches (migration 5): one row per transaction
// listing its notices, so a group's 50 exceptions cost its transactions one
// small row each, not 50 rows in four indexes (on the rehearsal's 20%
// benchmark those rows and their deletes made each group's commit about a
// third slower than the bulk ceiling's). record_notices (migration 4), a
// row per notice, is what workers before it wrote; sweeps still take its
// rows over, so an upgrade strands none.

// Notice is a pending record notice: a conflict or quarantine stored in
// bulk whose notice run has not been started yet.
type Notice struct {
	Key       string
	MessageID string
	Outcome   string // "conflict" or "quarantined"
	Reason    string // the quarantine reason; empty for a conflict
	// Batch names the notice_batches rows the notice is listed in (every
	// row one InsertFlood call wrote); empty for a record_notices row.
	Batch string
	// Claim is the sweep's claim on those rows; empty for the worker that
	// wrote them. A batch's rows are deleted under the same claim only.
	Claim string
}

// noticeTo says where a transaction's notices go: nowhere when none, else
// rows of batch, due at due.
type noticeTo struct {
	due   time.Time
	batch string
}

func (n noticeTo) none() bool { return n.due.IsZero() }

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
	var nt noticeTo
	if !noticeDue.IsZero() {
		batch, err := randomID()
		if err != nil {
			// No notice can be written: nothing is stored, everything
			// goes the default way.
			for range evs {
				res.Records = append(res.Records, BatchResult{Err: err})
			}
			res.Quarantine = err
			return res
		}
		nt = noticeTo{due: noticeDue, batch: batch}
	}
	done := make(chan struct{})
	if len(bad) > 0 {
		// Its own transaction, concurrent with the records': it shares no
		// row with them.
		go func() {
			defer close(done)
			_, res.Quarantine = retryTx(ctx, s.onRetry, func() (struct{}, error) {
				return struct{}{}, s.quarantineBatch(ctx, bad, nt)
			})
		}()
	} else {
		close(done)
	}
	res.Records = s.insertBatch(ctx, evs, nt)
	<-done
	if nt.none() {
		return res
	}
	for i, r := range res.Records {
		if r.Err == nil && r.Outcome == Conflict {
			res.Notices = append(res.Notices, Notice{Key: evs[i].Key, MessageID: evs[i].MessageID, Outcome: string(Conflict), Batch: nt.batch})
		}
	}
	if res.Quarantine == nil {
		for _, q := range bad {
			if q.Key != "" {
				res.Notices = append(res.Notices, Notice{Key: q.Key, MessageID: q.MessageID, Outcome: "quarantined",
					Reason: clip(q.Reason, qReasonChars), Batch: nt.batch})
			}
		}
	}
	return res
}

// quarantineBatch is one attempt at storing bad (and its notices) in one
// transaction, each entry as Quarantine would.
func (s *Store) quarantineBatch(ctx context.Context, bad []QuarantineEntry, nt noticeTo) error {
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
	if !nt.none() && len(notices) > 0 {
		if err := insertNotices(ctx, tx, notices, nt); err != nil {
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

// insertNotices lists ns (of one outcome) in one notice_batches row of
// nt's batch.
func insertNotices(ctx context.Context, tx *sql.Tx, ns []Notice, nt noticeTo) error {
	recs := make([]batchRecord, len(ns))
	for i, n := range ns {
		recs[i] = batchRecord{Key: n.Key, MessageID: n.MessageID, Reason: n.Reason}
	}
	b, err := json.Marshal(recs)
	if err != nil {
		return fmt.Errorf("store: encode record notices: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO notice_batches (batch, outcome, records, record_count, due_at) VALUES (?, ?, ?, ?, ?)`,
		nt.batch, ns[0].Outcome, b, len(ns), nt.due.UTC()); err != nil {
		return wrap("insert record notices", err)
	}
	return nil
}

// batchRecord is one notice in a notice_batches row's records (JSON).
type batchRecord struct {
	Key       string `json:"k"`
	MessageID string `json:"m"`
	Reason    string `json:"r,omitempty"`
}

// NoticeKeyFits reports whether key can be kept in a notice exactly: the
// column holds 128 characters and its collation pads trailing spaces.
func NoticeKeyFits(key, messageID string) bool {
	return key != "" && clip(key, qKeyChars) == key && len(messageID) > 0 && clip(messageID, qIDChars) == messageID &&
		key[len(key)-1] != ' ' && key[0] != ' '
}

// ClaimNotices takes notices whose due time has passed, for this caller
// alone until lease has passed again: a sweep of a worker that found
// notices another worker promised and never delivered (it died between its
// commit and the start). limit bounds the rows taken from each table; a
// notice_batches row lists the notices of one transaction (up to a
// group's).
func (s *Store) ClaimNotices(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Notice, error) {
	claim, err := randomID()
	if err != nil {
		return nil, err
	}
	out, err := s.claimBatches(ctx, claim, now, lease, limit)
	if err != nil {
		return nil, err
	}
	legacy, err := s.claimRecordNotices(ctx, claim, now, lease, limit)
	return append(out, legacy...), err
}

func (s *Store) claimBatches(ctx context.Context, claim string, now time.Time, lease time.Duration, limit int) ([]Notice, error) {
	if err := s.claimDue(ctx, "notice_batches", claim, now, lease, limit); err != nil {
		return nil, err
	}
	rows, err := s.DB.QueryContext(ctx,
		`SELECT batch, outcome, records FROM notice_batches WHERE claim = ? ORDER BY id`, claim)
	if err != nil {
		return nil, wrap("claim record notices: read", err)
	}
	defer rows.Close()
	var out []Notice
	for rows.Next() {
		var batch, outcome string
		var records []byte
		if err := rows.Scan(&batch, &outcome, &records); err != nil {
			return nil, wrap("claim record notices: read", err)
		}
		var recs []batchRecord
		if err := json.Unmarshal(records, &recs); err != nil {
			// Written by this package; unreadable means damaged. Left
			// claimed, it comes back after the lease and says so again.
			return nil, fmt.Errorf("store: notice batch %s: records unreadable: %w", batch, err)
		}
		for _, r := range recs {
			out = append(out, Notice{Key: r.Key, MessageID: r.MessageID, Outcome: outcome, Reason: r.Reason, Batch: batch, Claim: claim})
		}
	}
	return out, wrap("claim record notices: read", rows.Err())
}

// claimRecordNotices claims rows older workers wrote, one per notice.
func (s *Store) claimRecordNotices(ctx context.Context, claim string, now time.Time, lease time.Duration, limit int) ([]Notice, error) {
	if err := s.claimDue(ctx, "record_notices", claim, now, lease, limit); err != nil {
		return nil, err
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

// claimDue gives up to limit rows of table whose due time has passed to
// claim, due again once lease has passed.
func (s *Store) claimDue(ctx context.Context, table, claim string, now time.Time, lease time.Duration, limit int) error {
	_, err := s.DB.ExecContext(ctx,
		`UPDATE `+table+` SET claim = ?, due_at = ? WHERE due_at <= ? ORDER BY due_at LIMIT ?`,
		claim, now.Add(lease).UTC(), now.UTC(), limit)
	return wrap("claim record notices", err)
}

// randomID names a sweep's claim or the outbox batch of one InsertFlood
// call: 32 hex characters, unique without coordination.
func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("store: random id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// DeleteNotices removes delivered notices (their runs exist): the
// record_notices rows of those without a batch, and for those with one the
// rows of their batch held under their claim. The caller deletes a batch
// only once every notice of it that it holds is delivered.
func (s *Store) DeleteNotices(ctx context.Context, ns []Notice) error {
	type held struct{ batch, claim string }
	var batches []held
	seen := map[held]bool{}
	var legacy []Notice
	for _, n := range ns {
		if n.Batch == "" {
			legacy = append(legacy, n)
			continue
		}
		h := held{n.Batch, n.Claim}
		if !seen[h] {
			seen[h] = true
			batches = append(batches, h)
		}
	}
	const perStmt = 200
	for len(batches) > 0 {
		chunk := batches[:min(perStmt, len(batches))]
		batches = batches[len(chunk):]
		args := make([]any, 0, 2*len(chunk))
		for _, h := range chunk {
			args = append(args, h.batch, h.claim)
		}
		if _, err := s.DB.ExecContext(ctx,
			`DELETE FROM notice_batches WHERE (batch, claim) IN (`+repeatJoin("(?, ?)", len(chunk))+`)`, args...); err != nil {
			return wrap("delete record notices", err)
		}
	}
	for len(legacy) > 0 {
		chunk := legacy[:min(perStmt, len(legacy))]
		legacy = legacy[len(chunk):]
		args := make([]any, 0, 3*len(chunk))
		for _, n := range chunk {
			args = append(args, n.Key, n.MessageID, n.Outcome)
		}
		// Deletes meet the older workers' notice inserts in the unique
		// index; a deadlock between them is retried rather than left to
		// a sweep.
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
		`SELECT COALESCE(SUM(n), 0), COALESCE(SUM(o), 0) FROM (
			SELECT COUNT(*) AS n, COALESCE(SUM(due_at <= ?), 0) AS o FROM record_notices
			UNION ALL
			SELECT COALESCE(SUM(record_count), 0), COALESCE(SUM(CASE WHEN due_at <= ? THEN record_count ELSE 0 END), 0) FROM notice_batches
		) t`, now.UTC(), now.UTC()).Scan(&pending, &overdue)
	return pending, overdue, wrap("count record notices", err)
}
