// Package store writes sync events into PolarDB (MySQL-compatible) exactly
// once in effect.
//
// The database is the last line of deduplication: local_record_id (the
// RocketMQ MessageKey) is a unique key, and every write is an INSERT ... ON
// DUPLICATE KEY, so a redelivered message can never create a second row,
// even long after Temporal has forgotten the workflow that handled the
// first copy.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"

	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// Outcome of an idempotent insert.
type Outcome string

const (
	// Inserted: the key was new and the record is stored.
	Inserted Outcome = "inserted"
	// Duplicate: the key exists with the same payload; nothing changed.
	Duplicate Outcome = "duplicate"
	// Conflict: the key exists with another payload; the stored record is
	// untouched and the incoming version waits in sync_conflicts.
	Conflict Outcome = "conflict"
)

// Store is the PolarDB/MySQL persistence of sync events.
type Store struct {
	DB *sql.DB
	// Log receives migration progress; nil means slog.Default().
	Log *slog.Logger

	// SingleStatementInserts lets InsertBatch store a batch of new keys
	// with its multi-row INSERT alone, committed by autocommit, instead of
	// BEGIN, INSERT, COMMIT: one statement instead of three for the common
	// case. Rows it committed before a later step of the batch failed are
	// found by the retry as the same message's (Inserted). Events without a
	// message ID always take the transaction.
	SingleStatementInserts bool

	// beforeCommit, set only by tests, runs after Insert's statements and
	// before COMMIT, to break the connection at the worst moment.
	beforeCommit func(ctx context.Context, tx *sql.Tx) error
	// onRetry, set only by tests, sees each error retryTx retries.
	onRetry func(err error)
}

// New returns a Store on db, which should come from Open (strict sql_mode,
// UTC, changed-rows counting). It panics on a nil db so miswiring fails at
// start.
func New(db *sql.DB) *Store {
	if db == nil {
		panic("store.New: nil *sql.DB")
	}
	return &Store{DB: db}
}

// Connection defaults applied by Open when the DSN leaves them unset.
const (
	// DefaultMaxOpenConns caps the pool when Open gets 0.
	DefaultMaxOpenConns = 10
	defaultDialTimeout  = 5 * time.Second
	// Read/write timeouts bound a hung server (e.g. during failover) so a
	// statement fails and is retried instead of blocking an activity forever.
	defaultIOTimeout = 30 * time.Second
	// PolarDB proxies and failovers drop long-lived connections; recycling
	// them keeps the pool from handing out dead ones.
	connMaxLifetime = 5 * time.Minute
	connMaxIdleTime = time.Minute
	// strictMode makes the server reject bad data instead of truncating it
	// with a warning.
	strictMode = "'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'"
)

// Open connects to PolarDB/MySQL/MariaDB with go-sql-driver/mysql and pings.
// It forces what the store relies on: parseTime, UTC times (loc and session
// time_zone), changed-rows counting (no clientFoundRows), rejectReadOnly
// (failover), and strict
// sql_mode unless the DSN sets sql_mode itself. Dial, read and write
// timeouts default to 5s, 30s and 30s when the DSN has none. maxOpenConns
// caps the pool; 0 means DefaultMaxOpenConns.
func Open(ctx context.Context, dsn string, maxOpenConns int) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: parse DSN: %w", err)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.ClientFoundRows = false
	// After a PolarDB failover, pooled connections to the demoted primary
	// answer writes with "read-only" (1290/1836). With this the driver
	// drops such a connection (driver.ErrBadConn) so the pool reconnects to
	// the new primary on the next attempt.
	cfg.RejectReadOnly = true
	// Parameters are escaped by the driver and sent with the statement:
	// one round trip per statement instead of prepare, execute and close.
	// The driver rejects this for the few multibyte character sets where
	// client-side escaping is unsafe (BIG5, CP932, GB2312, GBK, SJIS); the
	// schema is utf8mb4.
	cfg.InterpolateParams = true
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultDialTimeout
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = defaultIOTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = defaultIOTimeout
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	if _, ok := cfg.Params["sql_mode"]; !ok {
		cfg.Params["sql_mode"] = strictMode
	}
	// NOW(3) and CURRENT_TIMESTAMP(3) defaults must agree with the UTC
	// device times written by Insert.
	cfg.Params["time_zone"] = "'+00:00'"

	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("store: configure driver: %w", err)
	}
	db := sql.OpenDB(connector)
	if maxOpenConns <= 0 {
		maxOpenConns = DefaultMaxOpenConns
	}
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxOpenConns)
	db.SetConnMaxLifetime(connMaxLifetime)
	db.SetConnMaxIdleTime(connMaxIdleTime)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close() // the ping error is the one worth reporting
		// The address only: the DSN carries the password.
		return nil, fmt.Errorf("store: ping %s %s: %w", cfg.Net, cfg.Addr, err)
	}
	return db, nil
}

const (
	insertRecordSQL = `INSERT INTO patient_records
		(local_record_id, message_id, patient_id, notes, device_time, payload, payload_hash)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE local_record_id = local_record_id`
	existingRowSQL = `SELECT message_id, payload_hash FROM patient_records WHERE local_record_id = ? FOR UPDATE`
	// The unique key (local_record_id, payload_hash) makes a redelivered
	// conflicting message a no-op.
	insertConflictSQL = `INSERT INTO sync_conflicts
		(local_record_id, message_id, payload, payload_hash, existing_hash, status)
		VALUES (?, ?, ?, ?, ?, 'open')
		ON DUPLICATE KEY UPDATE id = id`
)

// Deadlock retries inside Insert and InsertBatch. InnoDB may pick an
// insert as a deadlock victim when many workers hit the same key; the whole
// transaction was rolled back, so running it again is safe and cheaper than
// failing the activity.
const (
	maxInsertAttempts = 4
	deadlockBackoff   = 10 * time.Millisecond
)

// Insert stores ev exactly once in effect. The unique key decides, in one
// INSERT ... ON DUPLICATE KEY UPDATE that changes nothing on an existing
// row: 1 affected row means this call inserted it, 0 means the key was
// there. Only then is the existing hash read (under the row lock the
// statement already holds) to tell Duplicate from Conflict, so concurrent
// calls for one key yield exactly one Inserted per message.
//
// The outcome is truthful for a retried message: when the stored row has
// this event's hash and its (non-empty) message ID, an earlier attempt of
// this same message stored it, e.g. one whose COMMIT succeeded but whose
// reply was lost, and the outcome is Inserted, not Duplicate. Without a
// message ID an event cannot be told from another copy and a stored equal
// row is a Duplicate.
//
// On Conflict the stored record is not touched; the incoming version is
// kept in sync_conflicts once per (key, payload hash). All of it is one
// transaction and the outcome is only returned after COMMIT succeeded, so
// a caller may ack the message when err is nil.
func (s *Store) Insert(ctx context.Context, ev syncevent.Event) (Outcome, error) {
	if ev.Key == "" || ev.PatientID == "" || ev.Hash == "" {
		return "", ErrIncompleteEvent
	}
	return retryTx(ctx, s.onRetry, func() (Outcome, error) { return s.insertOnce(ctx, ev) })
}

// retryTx runs one transaction attempt, again after a deadlock or a
// duplicate-key error (both leave nothing behind once rolled back, and the
// next attempt sees the rows that caused them), at most maxInsertAttempts
// times in all. Other errors, lock wait timeouts included, are returned at
// once: a lock wait already took innodb_lock_wait_timeout, and the caller's
// own retry policy knows its deadline.
func retryTx[T any](ctx context.Context, onRetry func(error), attempt func() (T, error)) (T, error) {
	for n := 1; ; n++ {
		out, err := attempt()
		if err == nil || !isRetryableTx(err) || n == maxInsertAttempts {
			return out, err
		}
		if onRetry != nil {
			onRetry(err)
		}
		// Jitter so the deadlocked peers do not collide again in lockstep.
		wait := time.Duration(n)*deadlockBackoff + rand.N(deadlockBackoff)
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(wait):
		}
	}
}

func (s *Store) insertOnce(ctx context.Context, ev syncevent.Event) (Outcome, error) {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return "", wrap("insert: begin", err)
	}
	committed := false
	defer func() {
		if !committed {
			// Nothing to report: the statement or commit error is what
			// the caller needs, and an uncommitted tx changes nothing.
			_ = tx.Rollback()
		}
	}()

	res, err := tx.ExecContext(ctx, insertRecordSQL,
		ev.Key, nullString(ev.MessageID), ev.PatientID, ev.Notes, nullTime(ev.DeviceTime), ev.Payload, ev.Hash)
	if err != nil {
		return "", wrap("insert record", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return "", wrap("insert record: rows affected", err)
	}

	var out Outcome
	switch n {
	case 1:
		out = Inserted
	case 0:
		var (
			existingMsg sql.NullString
			existing    string
		)
		if err := tx.QueryRowContext(ctx, existingRowSQL, ev.Key).Scan(&existingMsg, &existing); err != nil {
			return "", wrap("insert: read existing hash", err)
		}
		if existing == ev.Hash {
			out = Duplicate
			if ev.MessageID != "" && existingMsg.String == ev.MessageID {
				out = Inserted
			}
			break
		}
		out = Conflict
		if _, err := tx.ExecContext(ctx, insertConflictSQL,
			ev.Key, nullString(ev.MessageID), ev.Payload, ev.Hash, existing); err != nil {
			return "", wrap("insert conflict", err)
		}
	default:
		return "", fmt.Errorf("store: insert record: %d rows affected, want 0 or 1: %w", n, ErrClientFoundRows)
	}

	if s.beforeCommit != nil {
		if err := s.beforeCommit(ctx, tx); err != nil {
			return "", err
		}
	}
	if err := tx.Commit(); err != nil {
		return "", wrap("insert: commit", err)
	}
	committed = true
	return out, nil
}

// QuarantineEntry is a message that can never be stored.
type QuarantineEntry struct {
	Key       string // MessageKey; may be empty or malformed
	MessageID string // RocketMQ message ID: with Reason, the idempotency key
	Tag       string
	Reason    string // machine code, e.g. syncevent.InvalidError.Reason; required
	Detail    string // human detail; must not contain patient values
	Body      []byte // raw body as received, for replay after a fix
	// ConsumedTimes is the broker's delivery count; a redelivery keeps the
	// highest seen.
	ConsumedTimes int64
}

// Column sizes of sync_quarantine. Quarantine must accept anything, since
// it is where bad data goes, so values are clipped to fit instead of
// failing.
const (
	qKeyChars    = 128
	qIDChars     = 64
	qTagChars    = 64
	qReasonChars = 64
	qDetailChars = 1024
	qBodyBytes   = 16<<20 - 1
	qRawKeyBytes = 1<<16 - 1 // BLOB
)

const quarantineSQL = `INSERT INTO sync_quarantine
	(local_record_id, raw_key, message_id, tag, reason, detail, body, consumed_times)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?)
	ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id), consumed_times = GREATEST(consumed_times, ?)`

// Quarantine records a poison message and returns its row ID. It is
// idempotent on (MessageID, Reason): a redelivered message returns the
// existing row's ID. Entries without a MessageID cannot be matched and each
// gets its own row.
func (s *Store) Quarantine(ctx context.Context, q QuarantineEntry) (int64, error) {
	args, err := quarantineArgs(q)
	if err != nil {
		return 0, err
	}
	res, err := s.DB.ExecContext(ctx, quarantineSQL, append(args, q.ConsumedTimes)...)
	if err != nil {
		return 0, wrap("quarantine", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, wrap("quarantine: last insert id", err)
	}
	return id, nil
}

// quarantineArgs are q's values for the columns of quarantineSQL, in order,
// clipped to fit.
func quarantineArgs(q QuarantineEntry) ([]any, error) {
	reason := clip(q.Reason, qReasonChars)
	if reason == "" {
		return nil, errors.New("store: quarantine: empty reason")
	}
	body := q.Body
	if len(body) > qBodyBytes {
		body = body[:qBodyBytes]
	}
	// The exact key, for replay. One too long for the column is not kept
	// at all rather than cut: a cut key must never be replayed as if whole.
	var rawKey []byte
	if q.Key != "" && len(q.Key) <= qRawKeyBytes {
		rawKey = []byte(q.Key)
	}
	return []any{nullString(clip(q.Key, qKeyChars)), rawKey, nullString(clip(q.MessageID, qIDChars)),
		nullString(clip(q.Tag, qTagChars)), reason, clip(q.Detail, qDetailChars),
		body, q.ConsumedTimes}, nil
}

// clip makes s storable in a utf8mb4 VARCHAR(max): invalid bytes replaced,
// at most max characters.
func clip(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	return string([]rune(s)[:max])
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func nullTime(t time.Time) sql.NullTime {
	return sql.NullTime{Time: t.UTC(), Valid: !t.IsZero()}
}
