package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// BatchResult is what became of one event of an InsertBatch call: an
// Outcome when Err is nil.
type BatchResult struct {
	Outcome Outcome
	Err     error
}

// Bounds of one batch transaction. The row count keeps the statement's
// placeholders (7 a row) and its lock set small; the byte count keeps the
// statement well under max_allowed_packet (16 MiB on a default MariaDB)
// however large the payloads are. An event larger than that goes alone.
const (
	maxBatchRows  = 128
	maxBatchBytes = 4 << 20
)

// errAmbiguous: a batch met rows it may or may not have inserted itself
// (equal hash, no message ID on either side), or a key it cannot find by
// its own spelling; the caller redoes those events one by one, where the
// affected-rows count tells.
var errAmbiguous = errors.New("store: batch cannot tell its own inserts from earlier copies without message IDs")

// InsertBatch stores evs with Insert's semantics per event (Inserted,
// Duplicate, Conflict, the message-ID rule included), sharing transactions:
// a flood of new records costs BEGIN, one multi-row INSERT and COMMIT per
// batch instead of per event. It returns one result per event, in order.
// A result without error is committed, so the caller may ack that message.
//
// Events for the same key are handled in input order, each in a later
// transaction than the one before, so the second sees the first. A
// transaction's keys are locked in sorted order, which keeps concurrent
// batches over overlapping keys (other workers included) from deadlocking
// each other in most cases; the rest (deadlocks, and duplicate keys racing
// in) are retried like Insert's. When one event's data is rejected (IsBadData)
// its whole transaction is redone event by event, so only that event fails.
// Any other error (lost connection, failed COMMIT, ctx) fails every event of
// the transaction it hit, and none of them is reported stored.
func (s *Store) InsertBatch(ctx context.Context, evs []syncevent.Event) []BatchResult {
	return s.insertBatch(ctx, evs, noticeTo{})
}

// insertBatch is InsertBatch; with nt set every conflict is written with
// its record notice (flood.go), in the same transaction.
func (s *Store) insertBatch(ctx context.Context, evs []syncevent.Event, nt noticeTo) []BatchResult {
	res := make([]BatchResult, len(evs))
	// rounds[r] holds the events that are the r-th of their key.
	var rounds [][]int
	seen := make(map[string]int, len(evs))
	for i, ev := range evs {
		if ev.Key == "" || ev.PatientID == "" || ev.Hash == "" {
			res[i].Err = ErrIncompleteEvent
			continue
		}
		r := seen[ev.Key]
		seen[ev.Key] = r + 1
		if r == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[r] = append(rounds[r], i)
	}
	for _, idx := range rounds {
		// Byte order is utf8mb4_bin's (the key column's) for valid UTF-8,
		// so rows are locked in index order.
		slices.SortFunc(idx, func(a, b int) int { return strings.Compare(evs[a].Key, evs[b].Key) })
		for len(idx) > 0 {
			n, bytes := 0, 0
			for n < len(idx) && n < maxBatchRows {
				size := eventBytes(evs[idx[n]])
				if n > 0 && bytes+size > maxBatchBytes {
					break
				}
				bytes += size
				n++
			}
			s.insertChunk(ctx, evs, idx[:n], res, nt)
			idx = idx[n:]
		}
	}
	return res
}

// eventBytes approximates what an event adds to the larger of the batch's
// INSERT statements (the records one; a conflict row is smaller).
func eventBytes(ev syncevent.Event) int {
	return len(ev.Payload) + len(ev.Notes) + len(ev.Key) + len(ev.MessageID) + len(ev.PatientID) + len(ev.Hash) + 64
}

// insertChunk stores evs[idx] (distinct keys, sorted) in one transaction
// and fills their results.
func (s *Store) insertChunk(ctx context.Context, evs []syncevent.Event, idx []int, res []BatchResult, nt noticeTo) {
	batch := make([]syncevent.Event, len(idx))
	for k, i := range idx {
		batch[k] = evs[i]
	}
	outs, err := retryTx(ctx, s.onRetry, func() ([]Outcome, error) { return s.insertBatchOnce(ctx, batch, nt) })
	if err == nil {
		for k, i := range idx {
			res[i] = BatchResult{Outcome: outs[k]}
		}
		return
	}
	// Redo event by event: only the culprit of bad data fails, and the
	// single-row insert's affected-rows count settles what the batch
	// could not tell (even for a batch of one).
	if (len(idx) > 1 && IsBadData(err)) || errors.Is(err, errAmbiguous) {
		for _, i := range idx {
			out, err := s.Insert(ctx, evs[i])
			if err == nil && out == Conflict && !nt.none() {
				// Insert writes no notice: the caller must settle this
				// one the way that makes it findable (its record
				// workflow, which finds the conflict already kept).
				err = ErrConflictWithoutNotice
			}
			res[i] = BatchResult{Outcome: out, Err: err}
		}
		return
	}
	for _, i := range idx {
		res[i] = BatchResult{Err: err}
	}
}

// storedRow is what a batch needs to know about an existing record.
type storedRow struct {
	messageID string
	hash      string
}

// insertBatchOnce is one attempt at one batch: the single-statement path
// below when the store is set up for it (SingleStatementInserts) and every
// event has a message ID (which is what tells a row this batch committed
// from an older copy), else one transaction (insertBatchTx).
func (s *Store) insertBatchOnce(ctx context.Context, batch []syncevent.Event, nt noticeTo) ([]Outcome, error) {
	if !s.SingleStatementInserts {
		return s.insertBatchTx(ctx, batch, nt)
	}
	for _, ev := range batch {
		if ev.MessageID == "" {
			return s.insertBatchTx(ctx, batch, nt)
		}
	}
	return s.insertBatchAutocommit(ctx, batch, nt)
}

// insertBatchTx is one attempt at one batch transaction: BEGIN; a
// multi-row INSERT ... ON DUPLICATE KEY UPDATE that changes nothing on an
// existing row; COMMIT. Its affected-rows count is the number of new rows,
// so when every key was new that is all. Otherwise the batch's rows (all
// locked by the INSERT already) are read to tell Inserted, Duplicate and
// Conflict apart, and the conflicting versions are kept in one more
// multi-row INSERT.
//
// The INSERT goes first, rather than a SELECT ... FOR UPDATE of the keys:
// in REPEATABLE READ a locking read of a missing key takes a gap lock, and
// new keys mostly land in the same gap (keys grow), so every pair of
// concurrent batches would deadlock on their inserts into it.
func (s *Store) insertBatchTx(ctx context.Context, batch []syncevent.Event, nt noticeTo) ([]Outcome, error) {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return nil, wrap("insert batch: begin", err)
	}
	committed := false
	defer func() {
		if !committed {
			// The statement or commit error is what the caller needs; an
			// uncommitted tx changes nothing.
			_ = tx.Rollback()
		}
	}()

	inserted, err := insertRecords(ctx, tx, batch)
	if err != nil {
		return nil, err
	}

	outs := make([]Outcome, len(batch))
	if inserted == int64(len(batch)) {
		for k := range outs {
			outs[k] = Inserted
		}
	} else if err := classifyTx(ctx, tx, batch, inserted, outs, nt); err != nil {
		return nil, err
	}

	if s.beforeCommit != nil {
		if err := s.beforeCommit(ctx, tx); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, wrap("insert batch: commit", err)
	}
	committed = true
	return outs, nil
}

// classifyTx is classify inside the batch's transaction, conflicts
// written in it too.
func classifyTx(ctx context.Context, tx *sql.Tx, batch []syncevent.Event, inserted int64, outs []Outcome, nt noticeTo) error {
	conflicts, stored, err := classify(ctx, tx, batch, inserted, outs)
	if err != nil || len(conflicts) == 0 {
		return err
	}
	return writeConflicts(ctx, tx, batch, conflicts, stored, nt)
}

// writeConflicts keeps the conflicting versions and, with nt set, their
// record notices, inside tx.
func writeConflicts(ctx context.Context, tx *sql.Tx, batch []syncevent.Event, conflicts []int, stored map[string]storedRow, nt noticeTo) error {
	args := make([]any, 0, 5*len(conflicts))
	for _, k := range conflicts {
		ev := batch[k]
		args = append(args, ev.Key, nullString(ev.MessageID), ev.Payload, ev.Hash, stored[ev.Key].hash)
	}
	if _, err := tx.ExecContext(ctx, insertConflictsSQL(len(conflicts)), args...); err != nil {
		return wrap("insert batch: conflicts", err)
	}
	if nt.none() {
		return nil
	}
	notices := make([]Notice, len(conflicts))
	for i, k := range conflicts {
		notices[i] = Notice{Key: batch[k].Key, MessageID: batch[k].MessageID, Outcome: string(Conflict)}
	}
	return insertNotices(ctx, tx, notices, nt)
}

// insertBatchAutocommit is one attempt at one batch. Its first statement is a
// multi-row INSERT ... ON DUPLICATE KEY UPDATE that changes nothing on an
// existing row, run on its own (autocommit): a single statement is atomic,
// and its affected-rows count is the number of new rows, so when every key
// was new, the common case in a flood, that one statement is all (no BEGIN
// or COMMIT around it). Otherwise the batch's rows are read to tell
// Inserted, Duplicate and Conflict apart (the message-ID rule makes the rows
// the INSERT just committed come out Inserted), and conflicting versions
// are kept in one more multi-row INSERT, in a transaction.
//
// The INSERT goes first, rather than a SELECT ... FOR UPDATE of the keys:
// in REPEATABLE READ a locking read of a missing key takes a gap lock, and
// new keys mostly land in the same gap (keys grow), so every pair of
// concurrent batches would deadlock on their inserts into it.
//
// An error after the INSERT (the read, the conflicts, COMMIT) leaves the
// new rows committed but reports no outcome; the caller's retry finds them
// as its own (Inserted), so nothing is acked before it is stored and
// nothing is stored twice.
func (s *Store) insertBatchAutocommit(ctx context.Context, batch []syncevent.Event, nt noticeTo) ([]Outcome, error) {
	inserted, err := insertRecords(ctx, s.DB, batch)
	if err != nil {
		return nil, err
	}
	outs := make([]Outcome, len(batch))
	if inserted == int64(len(batch)) {
		for k := range outs {
			outs[k] = Inserted
		}
		return outs, nil
	}
	conflicts, stored, err := classify(ctx, s.DB, batch, inserted, outs)
	if err != nil || len(conflicts) == 0 {
		return outs, err
	}
	return outs, s.insertConflicts(ctx, batch, conflicts, stored, nt)
}

// insertConflicts keeps the conflicting versions, in a transaction so a
// failure at COMMIT is seen as such (and tests can break it there).
func (s *Store) insertConflicts(ctx context.Context, batch []syncevent.Event, conflicts []int, stored map[string]storedRow, nt noticeTo) error {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return wrap("insert batch: begin", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback() // the statement or commit error is the one to report
		}
	}()
	if err := writeConflicts(ctx, tx, batch, conflicts, stored, nt); err != nil {
		return err
	}
	if s.beforeCommit != nil {
		if err := s.beforeCommit(ctx, tx); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return wrap("insert batch: commit", err)
	}
	committed = true
	return nil
}

// insertRecords runs the batch's multi-row INSERT ... ON DUPLICATE KEY on e
// (a transaction, or the pool for autocommit) and returns how many rows
// it created.
func insertRecords(ctx context.Context, e interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}, batch []syncevent.Event) (int64, error) {
	args := make([]any, 0, 7*len(batch))
	for _, ev := range batch {
		args = append(args, ev.Key, nullString(ev.MessageID), ev.PatientID, ev.Notes, nullTime(ev.DeviceTime), ev.Payload, ev.Hash)
	}
	r, err := e.ExecContext(ctx, insertRecordsSQL(len(batch)), args...)
	if err != nil {
		return 0, wrap("insert batch: records", err)
	}
	inserted, err := r.RowsAffected()
	if err != nil {
		return 0, wrap("insert batch: rows affected", err)
	}
	if inserted > int64(len(batch)) {
		return 0, fmt.Errorf("store: insert batch: %d rows affected for %d events: %w", inserted, len(batch), ErrClientFoundRows)
	}
	return inserted, nil
}

// queryer is a *sql.DB or *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// classify reads the stored rows of batch, sets each event's outcome and
// returns the events that conflict. inserted is how many rows the batch's
// INSERT created.
func classify(ctx context.Context, q queryer, batch []syncevent.Event, inserted int64, outs []Outcome) ([]int, map[string]storedRow, error) {
	stored, err := readRows(ctx, q, batch)
	if err != nil {
		return nil, nil, err
	}
	var (
		conflicts []int
		own       int64 // events whose stored row carries their hash and message ID
		anonymous bool  // one of those has no message ID
	)
	for k, ev := range batch {
		row, ok := stored[ev.Key]
		switch {
		case !ok:
			// The INSERT left every key present, so the server matched
			// this key to another spelling ("a " = "a" under PAD SPACE).
			// syncevent.Parse refuses such keys; the per-event path
			// still gives each event an answer.
			return nil, nil, errAmbiguous
		case row.hash != ev.Hash:
			outs[k] = Conflict
			conflicts = append(conflicts, k)
		case row.messageID == ev.MessageID:
			// Stored by this batch or by an earlier attempt of the same
			// message: Inserted either way.
			outs[k] = Inserted
			own++
			anonymous = anonymous || ev.MessageID == ""
		default:
			outs[k] = Duplicate
		}
	}
	// Every row this batch created carries its event's hash and message ID,
	// so it is among the own ones; if they are all of them, all are this
	// batch's. Otherwise an event without a message ID may have met an
	// older copy and be a Duplicate; only a per-event insert can tell.
	if anonymous && own != inserted {
		return nil, nil, errAmbiguous
	}
	return conflicts, stored, nil
}

// readRows returns the stored message ID and hash of batch's keys. FOR
// UPDATE makes it read the newest committed rows whatever the isolation
// level.
func readRows(ctx context.Context, tx queryer, batch []syncevent.Event) (map[string]storedRow, error) {
	args := make([]any, len(batch))
	for k, ev := range batch {
		args[k] = ev.Key
	}
	rows, err := tx.QueryContext(ctx, selectRowsSQL(len(batch)), args...)
	if err != nil {
		return nil, wrap("insert batch: read existing", err)
	}
	defer rows.Close()
	stored := make(map[string]storedRow, len(batch))
	for rows.Next() {
		var (
			key  string
			msg  sql.NullString
			hash string
		)
		if err := rows.Scan(&key, &msg, &hash); err != nil {
			return nil, wrap("insert batch: read existing", err)
		}
		stored[key] = storedRow{messageID: msg.String, hash: hash}
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("insert batch: read existing", err)
	}
	return stored, nil
}

func insertRecordsSQL(n int) string {
	return `INSERT INTO patient_records
		(local_record_id, message_id, patient_id, notes, device_time, payload, payload_hash)
		VALUES ` + repeatJoin("(?, ?, ?, ?, ?, ?, ?)", n) + `
		ON DUPLICATE KEY UPDATE local_record_id = local_record_id`
}

// FORCE INDEX: on a small table the optimizer prefers a scan of the
// clustered index for an IN list, and FOR UPDATE then locks every row it
// passes, among them the half-inserted row of a concurrent batch that is
// about to find its key taken, which waits for this batch: a deadlock
// between batches that share no key.
func selectRowsSQL(n int) string {
	return `SELECT local_record_id, message_id, payload_hash
		FROM patient_records FORCE INDEX (uq_patient_records_local_record_id)
		WHERE local_record_id IN (` + repeatJoin("?", n) + `) FOR UPDATE`
}

// The unique key (local_record_id, payload_hash) keeps each incoming
// version once, as in Insert.
func insertConflictsSQL(n int) string {
	return `INSERT INTO sync_conflicts
		(local_record_id, message_id, payload, payload_hash, existing_hash, status)
		VALUES ` + repeatJoin("(?, ?, ?, ?, ?, 'open')", n) + `
		ON DUPLICATE KEY UPDATE id = id`
}

func repeatJoin(s string, n int) string {
	var b strings.Builder
	b.Grow(n * (len(s) + 2))
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s)
	}
	return b.String()
}

// MaxOpenConns is the pool's connection cap (0: unlimited), for callers
// such as groupcommit that must not run more transactions at once than the
// pool can hold.
func (s *Store) MaxOpenConns() int { return s.DB.Stats().MaxOpenConnections }
