package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/go-sql-driver/mysql"

	"github.com/syncbridge/syncbridge/internal/syncevent"
)

// ErrIncompleteEvent is returned by Insert for an Event that did not come
// out of syncevent.Parse (no key or no hash). Retrying cannot fix it.
var ErrIncompleteEvent = errors.New("store: event lacks key, patient ID or payload hash")

// ErrClientFoundRows is returned by Migrate when the connection reports
// matched instead of changed rows (the driver's clientFoundRows option):
// Insert could then not tell a new record from a duplicate.
var ErrClientFoundRows = errors.New("store: connection uses clientFoundRows; Insert needs it off (use store.Open)")

// Error is a failed database operation. Its message names the operation
// and, for server errors, the MySQL error number and column, but never the
// server's message text: MySQL quotes the offending value there ("Incorrect
// string value: '...' for column"), and that value can be patient data.
// The original error stays reachable through errors.As / errors.Is.
type Error struct {
	Op  string // what the store was doing, e.g. "insert record"
	Err error
}

func (e *Error) Error() string {
	var me *mysql.MySQLError
	if errors.As(e.Err, &me) {
		msg := fmt.Sprintf("store: %s: mysql error %d (%s)", e.Op, me.Number, me.SQLState[:])
		if col := columnOf(me.Message); col != "" {
			msg += " on column " + col
		}
		return msg
	}
	return "store: " + e.Op + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, Err: err}
}

// columnOf extracts the column name from a MySQL/MariaDB message such as
// "Data too long for column 'notes' at row 1" or "... for column
// `db`.`t`.`notes` at row 1". The last "column " is used because any quoted
// value comes before it; the result must look like an identifier.
func columnOf(msg string) string {
	i := max(strings.LastIndex(msg, "column "), strings.LastIndex(msg, "Column "))
	if i < 0 {
		return ""
	}
	rest := msg[i+len("column "):]
	var last string
	for len(rest) > 0 && (rest[0] == '\'' || rest[0] == '`') {
		q := rest[0]
		end := strings.IndexByte(rest[1:], q)
		if end < 0 {
			return ""
		}
		last = rest[1 : 1+end]
		rest = rest[2+end:]
		if len(rest) == 0 || rest[0] != '.' {
			break
		}
		rest = rest[1:]
	}
	if last == "" || len(last) > 64 {
		return ""
	}
	for _, c := range []byte(last) {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return last
}

// MySQL / MariaDB server error numbers used for classification.
const (
	erConCount             = 1040 // too many connections
	erBadNull              = 1048 // column cannot be null
	erServerShutdown       = 1053
	erNormalShutdown       = 1077
	erAbortingConnection   = 1152
	erNetReadInterrupted   = 1159
	erNetWriteInterrupted  = 1161
	erTooManyUserConns     = 1203
	erLockWaitTimeout      = 1205
	erLockDeadlock         = 1213
	erUserLimitReached     = 1226
	erTruncatedWrongValue  = 1292 // incorrect datetime value
	erQueryInterrupted     = 1317 // KILL QUERY, shutdown
	erNoDefaultForField    = 1364
	erTruncatedWrongField  = 1366 // incorrect string value
	erWrongValueForType    = 1411
	erDataTooLong          = 1406
	erNoReferencedRow      = 1452 // foreign key
	erDupEntry             = 1062
	erDataOutOfRange       = 1264
	erWarnDataTruncated    = 1265
	erInvalidCharacter     = 1300
	erOptionPreventsStmt   = 1290 // --read-only: a failover demoted the primary
	erReadOnlyTransaction  = 1792
	erReadOnlyMode         = 1836
	erConnectionKilled     = 1927 // MariaDB: KILL of this connection
	erStatementTimeout     = 1969 // MariaDB max_statement_time
	erGoneAway             = 2006 // client-side codes some proxies relay
	erLostConnection       = 2013
	erQueryTimeout         = 3024 // MySQL max_execution_time
	erInvalidJSONText      = 3140
	erCheckViolatedMySQL   = 3819
	erCheckViolatedMariaDB = 4025
)

var transientCodes = map[uint16]bool{
	erConCount: true, erServerShutdown: true, erNormalShutdown: true,
	erAbortingConnection: true, erNetReadInterrupted: true, erNetWriteInterrupted: true,
	erTooManyUserConns: true, erLockWaitTimeout: true, erLockDeadlock: true,
	erUserLimitReached: true, erQueryInterrupted: true, erOptionPreventsStmt: true,
	erReadOnlyTransaction: true, erReadOnlyMode: true, erConnectionKilled: true,
	erStatementTimeout: true, erGoneAway: true, erLostConnection: true, erQueryTimeout: true,
}

var badDataCodes = map[uint16]bool{
	erBadNull: true, erTruncatedWrongValue: true, erNoDefaultForField: true,
	erTruncatedWrongField: true, erWrongValueForType: true, erDataTooLong: true,
	erNoReferencedRow: true, erDataOutOfRange: true, erWarnDataTruncated: true,
	erInvalidCharacter: true, erInvalidJSONText: true,
	erCheckViolatedMySQL: true, erCheckViolatedMariaDB: true,
}

// IsTransient reports whether err may go away on retry: lost or refused
// connections, deadlocks, lock wait timeouts, a read-only server during
// failover, too many connections, server shutdown, and deadlines hit while
// talking to the database. A cancelled context is not transient: someone
// decided to stop.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return transientCodes[me.Number]
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, mysql.ErrMalformPkt) ||
		errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ETIMEDOUT) ||
		errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	// Some layers (proxies, wrapped driver logs) flatten errors to text.
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"connection refused", "connection reset", "broken pipe", "i/o timeout", "invalid connection", "bad connection", "server has gone away", "lost connection"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// IsBadData reports whether err means the data itself can never be stored
// (too long, wrong encoding, invalid date, out of range, missing required
// value, failed constraint): retrying is pointless, quarantine instead.
// Invalid events from syncevent.Parse count as bad data too.
func IsBadData(err error) bool {
	if err == nil {
		return false
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return badDataCodes[me.Number]
	}
	var ie *syncevent.InvalidError
	return errors.As(err, &ie) || errors.Is(err, ErrIncompleteEvent)
}

func isDeadlock(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == erLockDeadlock
}

// isRetryableTx reports a transaction that failed only because of a
// concurrent one: a deadlock victim, or a duplicate key another
// transaction committed first. Running it again sees the other's rows.
func isRetryableTx(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == erLockDeadlock || me.Number == erDupEntry)
}

// More server error numbers, for Classify.
const (
	erDBAccessDenied       = 1044 // no rights on the database
	erAccessDenied         = 1045 // wrong user or password
	erBadDB                = 1049 // unknown database
	erBadField             = 1054 // unknown column: schema older than the binary
	erRowSizeTooLarge      = 1118
	erTableAccessDenied    = 1142
	erColumnAccessDenied   = 1143
	erNoSuchTable          = 1146
	erNetPacketTooLarge    = 1153 // over max_allowed_packet
	erWrongArguments       = 1210
	erSpecificAccessDenied = 1227
	erProcAccessDenied     = 1370
	erSignalException      = 1644 // SIGNAL from a trigger or procedure
	erSignalNotFound       = 1643
)

// Class says what a failed database operation calls for.
type Class int

const (
	// ClassNone: no error.
	ClassNone Class = iota
	// ClassTransient: the connection, a lock or a failover; retry.
	ClassTransient
	// ClassBadData: this record can never be stored as it is (too long,
	// wrong encoding, too large a packet, a trigger refused it);
	// retrying is pointless, quarantine it.
	ClassBadData
	// ClassEnvironment: the database refuses the pipeline as a whole
	// (rights, missing database or table, read-only). Every record would
	// fail the same way, so quarantining would empty the topic into the
	// quarantine table; retry instead, and alert (metric, /readyz) so an
	// operator fixes the environment.
	ClassEnvironment
	// ClassUnclassified: nobody knows. Retried for a bounded time (the
	// caller's policy), then quarantined.
	ClassUnclassified
)

func (c Class) String() string {
	switch c {
	case ClassNone:
		return "none"
	case ClassTransient:
		return "transient"
	case ClassBadData:
		return "bad_data"
	case ClassEnvironment:
		return "environment"
	case ClassUnclassified:
		return "unclassified"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Data-dependent permanent errors beyond badDataCodes: the same statement
// with other values would pass.
var permanentDataCodes = map[uint16]bool{
	erRowSizeTooLarge: true, erNetPacketTooLarge: true, erWrongArguments: true,
	erSignalException: true, erSignalNotFound: true,
}

// environmentCodes fail every record alike until someone fixes the
// database. The read-only codes are here too: a failover heals in seconds
// (retried like the rest), a server left read-only needs a person.
var environmentCodes = map[uint16]bool{
	erDBAccessDenied: true, erAccessDenied: true, erBadDB: true, erBadField: true,
	erTableAccessDenied: true, erColumnAccessDenied: true, erNoSuchTable: true,
	erSpecificAccessDenied: true, erProcAccessDenied: true,
	erOptionPreventsStmt: true, erReadOnlyTransaction: true, erReadOnlyMode: true,
}

// Classify sorts a database error into what the caller should do with it.
// Bad data wins over everything (it is about this record only); a
// cancelled context counts as transient: the worker is stopping and the
// record will be retried, not given up.
func Classify(err error) Class {
	switch {
	case err == nil:
		return ClassNone
	case IsBadData(err), errors.Is(err, mysql.ErrPktTooLarge):
		return ClassBadData
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch {
		case permanentDataCodes[me.Number]:
			return ClassBadData
		case environmentCodes[me.Number]:
			return ClassEnvironment
		case transientCodes[me.Number]:
			return ClassTransient
		}
		return ClassUnclassified
	}
	if IsTransient(err) || errors.Is(err, context.Canceled) {
		return ClassTransient
	}
	return ClassUnclassified
}

// ErrorNumber returns the MySQL error number in err's chain, 0 if none.
// mysql.ErrPktTooLarge (the driver refusing before sending) is reported
// as 1153, the number the server would have given.
func ErrorNumber(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	if errors.Is(err, mysql.ErrPktTooLarge) {
		return erNetPacketTooLarge
	}
	return 0
}
