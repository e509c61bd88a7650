package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// migration is one schema version. Statements are idempotent on their own
// (IF NOT EXISTS) because MySQL DDL commits implicitly: a worker that dies
// between two statements leaves a half-applied version that the next
// Migrate must be able to finish.
type migration struct {
	version int
	name    string
	stmts   []string
	// addColumns are added after stmts, each only if missing: MySQL 8 has
	// no ADD COLUMN IF NOT EXISTS (MariaDB has), so this is how a
	// half-applied version stays finishable.
	addColumns []column
}

// column is an ALTER TABLE ... ADD COLUMN of a migration.
type column struct {
	table, name, definition string
}

// Keys (local_record_id) compare byte for byte (utf8mb4_bin): two device
// record IDs differing only in case or accents are different records.
// Payloads are MEDIUMBLOB, not JSON, because MySQL's JSON type re-orders and
// re-spaces documents, which would break the canonical bytes the hash is
// computed over.
var migrations = []migration{
	{version: 1, name: "patient records, conflicts, quarantine", stmts: []string{
		`CREATE TABLE IF NOT EXISTS patient_records (
			id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
			local_record_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
			message_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
			patient_id VARCHAR(64) NOT NULL,
			notes TEXT NULL,
			device_time DATETIME(3) NULL,
			payload MEDIUMBLOB NOT NULL,
			payload_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
			created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
			updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
			PRIMARY KEY (id),
			UNIQUE KEY uq_patient_records_local_record_id (local_record_id),
			KEY ix_patient_records_patient_id (patient_id)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
		`CREATE TABLE IF NOT EXISTS sync_conflicts (
			id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
			local_record_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
			message_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
			payload MEDIUMBLOB NOT NULL,
			payload_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
			existing_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
			received_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
			status VARCHAR(32) NOT NULL DEFAULT 'open',
			resolved_at DATETIME(3) NULL,
			PRIMARY KEY (id),
			UNIQUE KEY uq_sync_conflicts_record_hash (local_record_id, payload_hash),
			KEY ix_sync_conflicts_status (status),
			CONSTRAINT ck_sync_conflicts_status CHECK (status IN ('open', 'resolved_keep_existing', 'resolved_incoming'))
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
		`CREATE TABLE IF NOT EXISTS sync_quarantine (
			id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
			local_record_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
			message_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
			tag VARCHAR(64) NULL,
			reason VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
			detail VARCHAR(1024) NOT NULL DEFAULT '',
			body MEDIUMBLOB NULL,
			consumed_times BIGINT NOT NULL DEFAULT 0,
			quarantined_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
			status VARCHAR(32) NOT NULL DEFAULT 'quarantined',
			status_reason VARCHAR(1024) NULL,
			updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
			PRIMARY KEY (id),
			UNIQUE KEY uq_sync_quarantine_message_reason (message_id, reason),
			KEY ix_sync_quarantine_status (status),
			CONSTRAINT ck_sync_quarantine_status CHECK (status IN ('quarantined', 'replay_requested', 'replayed', 'discarded'))
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
	}},
	// `starter pollers stop` must outlive worker restarts and Temporal's
	// retention of the stopped poller workflows, so the intent lives
	// here, one row per pipeline (topic, group). Binary collation: topic
	// and group names are case-sensitive at the broker.
	{version: 2, name: "poller stop intent", stmts: []string{
		`CREATE TABLE IF NOT EXISTS poller_control (
			topic VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
			consumer_group VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
			stopped BOOLEAN NOT NULL,
			changed_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
			PRIMARY KEY (topic, consumer_group)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
	}},
	// local_record_id is a readable copy of a quarantined message's key,
	// cut to 128 characters with invalid bytes replaced, so a replay could
	// run under a key that is not the one sent. raw_key keeps the key's
	// bytes exactly; BLOB (64 KiB) because it is never indexed or searched
	// and the broker's message properties are smaller than that. NULL on
	// rows from before this version: replay then uses local_record_id only
	// where it cannot have been altered (store.QuarantineRow.ExactKey).
	{version: 3, name: "quarantine keeps the full raw key", addColumns: []column{
		{"sync_quarantine", "raw_key", "BLOB NULL"},
	}},
	// Flood mode stores conflicts and quarantines in its bulk transaction
	// and acks them at once; their record workflows (what the Web UI's
	// SyncOutcome filter finds) are started afterwards. A row here, written
	// in the same transaction, is the promise of that start (an outbox):
	// deleted once the workflow exists, taken over by another worker's
	// sweep once due_at passes, so a crash between the commit and the start
	// cannot hide a record from the Web UI. The unique key folds a
	// redelivery's notice into the pending one. claim marks the rows one
	// sweep took (store.ClaimNotices).
	{version: 4, name: "record notices (flood mode's outbox)", stmts: []string{
		`CREATE TABLE IF NOT EXISTS record_notices (
			id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
			local_record_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
			message_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
			outcome VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
			reason VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '',
			created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
			due_at DATETIME(3) NOT NULL,
			claim CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
			PRIMARY KEY (id),
			UNIQUE KEY uq_record_notices_message (local_record_id, message_id, outcome),
			KEY ix_record_notices_due (due_at),
			KEY ix_record_notices_claim (claim)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
	}},
	// The outbox as one row per transaction (store.InsertFlood): its
	// notices as JSON in records, record_count of them. batch names the
	// rows of one InsertFlood call, claim the sweep holding them ('' for
	// the worker that wrote them); a row is deleted under its claim only.
	// record_notices stays for the rows older workers write during an
	// upgrade; sweeps take those over too.
	{version: 5, name: "record notices batched per transaction", stmts: []string{
		`CREATE TABLE IF NOT EXISTS notice_batches (
			id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
			batch CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
			outcome VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
			records MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
			record_count INT NOT NULL,
			created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
			due_at DATETIME(3) NOT NULL,
			claim CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '',
			PRIMARY KEY (id),
			KEY ix_notice_batches_batch (batch, claim),
			KEY ix_notice_batches_due (due_at),
			KEY ix_notice_batches_claim (claim)
		) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`,
	}},
}

// SchemaVersion is the newest schema version this binary knows.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version INT NOT NULL,
	name VARCHAR(255) NOT NULL,
	applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
	PRIMARY KEY (version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci`

// lockPoll is how long one GET_LOCK call waits. Short, so the loop can
// notice context cancellation and never outlives the driver's read timeout.
const lockPoll = 2 // seconds

// Migrate brings the schema to SchemaVersion. It is idempotent and safe when
// several workers start at once: they serialise on a named server lock
// (GET_LOCK, held by one pinned connection and released when it closes, even
// if the process dies), and every statement is itself idempotent. Versions
// newer than this binary knows are left alone, so an old worker can keep
// running during a rolling deploy.
//
// Migrate also checks the session settings Insert relies on: strict
// sql_mode, and changed-rows (not found-rows) counting.
func (s *Store) Migrate(ctx context.Context) (err error) {
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return wrap("migrate: get connection", err)
	}
	defer conn.Close()

	var dbName sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&dbName); err != nil {
		return wrap("migrate: current database", err)
	}
	if !dbName.Valid {
		return errors.New("store: migrate: DSN names no database")
	}
	lock := lockName(dbName.String)
	if err := acquireLock(ctx, conn, lock); err != nil {
		return err
	}
	defer func() {
		// Closing the connection would release the lock too; releasing
		// explicitly frees it at once for the next worker. A fresh
		// context so a cancelled ctx still releases.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		// SELECT rather than DO: the embedded dev database does not
		// support DO.
		var released sql.NullInt64
		if rerr := conn.QueryRowContext(rctx, "SELECT RELEASE_LOCK(?)", lock).Scan(&released); rerr != nil && err == nil {
			err = wrap("migrate: release lock", rerr)
		}
	}()

	if err := checkSession(ctx, conn); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, createMigrationsTable); err != nil {
		return wrap("migrate: create schema_migrations", err)
	}
	applied, err := appliedVersions(ctx, conn)
	if err != nil {
		return err
	}
	for _, m := range migrations {
		if applied[m.version] {
			continue
		}
		start := time.Now()
		for i, stmt := range m.stmts {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return wrap(fmt.Sprintf("migrate: version %d statement %d", m.version, i+1), err)
			}
		}
		for _, c := range m.addColumns {
			if err := addColumn(ctx, conn, c); err != nil {
				return wrap(fmt.Sprintf("migrate: version %d add %s.%s", m.version, c.table, c.name), err)
			}
		}
		if _, err := conn.ExecContext(ctx,
			`INSERT INTO schema_migrations (version, name) VALUES (?, ?) ON DUPLICATE KEY UPDATE version = version`,
			m.version, m.name); err != nil {
			return wrap(fmt.Sprintf("migrate: record version %d", m.version), err)
		}
		s.logger().InfoContext(ctx, "schema migration applied", "version", m.version, "name", m.name, "duration", time.Since(start))
	}
	return checkChangedRows(ctx, conn)
}

func addColumn(ctx context.Context, conn *sql.Conn, c column) error {
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?`, c.table, c.name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, err := conn.ExecContext(ctx, "ALTER TABLE "+c.table+" ADD COLUMN "+c.name+" "+c.definition)
	return err
}

// lockName scopes the lock to the database: GET_LOCK names are server-wide
// and at most 64 characters.
func lockName(db string) string {
	name := "syncbridge.migrate." + db
	if len(name) <= 64 {
		return name
	}
	sum := sha256.Sum256([]byte(db))
	return "syncbridge.migrate." + hex.EncodeToString(sum[:])[:40]
}

func acquireLock(ctx context.Context, conn *sql.Conn, name string) error {
	for {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", name, lockPoll).Scan(&got); err != nil {
			return wrap("migrate: get lock", err)
		}
		if !got.Valid {
			return errors.New("store: migrate: GET_LOCK failed")
		}
		if got.Int64 == 1 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("store: migrate: waiting for migration lock held by another worker: %w", err)
		}
	}
}

func appliedVersions(ctx context.Context, conn *sql.Conn) (map[int]bool, error) {
	rows, err := conn.QueryContext(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, wrap("migrate: read versions", err)
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, wrap("migrate: read versions", err)
		}
		applied[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("migrate: read versions", err)
	}
	return applied, nil
}

// checkSession refuses a non-strict session: MySQL would otherwise truncate
// an over-long value with a warning and Insert would report success for a
// record it stored damaged.
func checkSession(ctx context.Context, conn *sql.Conn) error {
	var mode string
	if err := conn.QueryRowContext(ctx, "SELECT @@SESSION.sql_mode").Scan(&mode); err != nil {
		return wrap("migrate: read sql_mode", err)
	}
	if !strings.Contains(mode, "STRICT_ALL_TABLES") && !strings.Contains(mode, "STRICT_TRANS_TABLES") {
		return fmt.Errorf("store: session sql_mode %q is not strict; open the database with store.Open", mode)
	}
	return nil
}

// checkChangedRows probes the affected-rows semantics Insert depends on: a
// no-op ON DUPLICATE KEY UPDATE must report 0 rows. With clientFoundRows it
// reports 1 and every duplicate would look like a fresh insert.
func checkChangedRows(ctx context.Context, conn *sql.Conn) error {
	m := migrations[0]
	res, err := conn.ExecContext(ctx,
		`INSERT INTO schema_migrations (version, name) VALUES (?, ?) ON DUPLICATE KEY UPDATE version = version`,
		m.version, m.name)
	if err != nil {
		return wrap("migrate: probe affected rows", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return wrap("migrate: probe affected rows", err)
	}
	if n != 0 {
		return ErrClientFoundRows
	}
	return nil
}

func (s *Store) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}
