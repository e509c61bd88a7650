package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/syncbridge/syncbridge/internal/store/storetest"
	"github.com/syncbridge/syncbridge/internal/syncevent"
)

func TestClassifySynthetic(t *testing.T) {
	t.Parallel()
	my := func(n uint16) error { return &mysql.MySQLError{Number: n, Message: "x"} }
	tests := []struct {
		name           string
		err            error
		transient, bad bool
	}{
		{"nil", nil, false, false},
		{"plain", errors.New("boom"), false, false},
		{"bad conn", driver.ErrBadConn, true, false},
		{"invalid conn wrapped", fmt.Errorf("exec: %w", mysql.ErrInvalidConn), true, false},
		{"conn done", sql.ErrConnDone, true, false},
		{"eof", io.EOF, true, false},
		{"unexpected eof", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true, false},
		{"net op error", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true, false},
		{"reset", fmt.Errorf("write: %w", syscall.ECONNRESET), true, false},
		{"refused as text", errors.New("dial tcp 10.0.0.1:3306: connect: connection refused"), true, false},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), true, false},
		{"canceled", context.Canceled, false, false},
		{"deadlock", my(1213), true, false},
		{"lock wait", my(1205), true, false},
		{"read only", my(1290), true, false},
		{"read only mode", my(1836), true, false},
		{"too many conns", my(1040), true, false},
		{"shutdown", my(1053), true, false},
		{"normal shutdown", my(1077), true, false},
		{"aborted", my(1152), true, false},
		{"net read", my(1159), true, false},
		{"net write", my(1161), true, false},
		{"gone away", my(2006), true, false},
		{"lost", my(2013), true, false},
		{"killed (MariaDB)", my(1927), true, false},
		{"too long", my(1406), false, true},
		{"bad string", my(1366), false, true},
		{"bad datetime", my(1292), false, true},
		{"out of range", my(1264), false, true},
		{"null", my(1048), false, true},
		{"fk", my(1452), false, true},
		{"check", my(4025), false, true},
		{"wrapped by store", wrap("insert record", my(1406)), false, true},
		{"duplicate entry", my(1062), false, false},
		{"syntax", my(1064), false, false},
		{"invalid event", fmt.Errorf("parse: %w", &syncevent.InvalidError{Reason: syncevent.ReasonBadJSON}), false, true},
		{"incomplete event", ErrIncompleteEvent, false, true},
	}
	for _, tc := range tests {
		if got := IsTransient(tc.err); got != tc.transient {
			t.Errorf("%s: IsTransient = %v, want %v", tc.name, got, tc.transient)
		}
		if got := IsBadData(tc.err); got != tc.bad {
			t.Errorf("%s: IsBadData = %v, want %v", tc.name, got, tc.bad)
		}
	}
}

func TestErrorRedactsServerMessage(t *testing.T) {
	t.Parallel()
	tests := []struct{ msg, col string }{
		{"Data too long for column 'patient_id' at row 1", "patient_id"},
		{"Incorrect string value: '\\xFF SECRET' for column `sbtest_1`.`patient_records`.`notes` at row 1", "notes"},
		{"Incorrect string value: 'SECRET for column 'x'' for column 'notes' at row 1", "notes"},
		{"Column 'patient_id' cannot be null", "patient_id"},
		{"Duplicate entry 'SECRET' for key 'uq'", ""},
		{"Incorrect datetime value: 'SECRET' for column 'a b' at row 1", ""},
	}
	for _, tc := range tests {
		err := wrap("insert record", &mysql.MySQLError{Number: 1366, SQLState: [5]byte{'2', '2', '0', '0', '7'}, Message: tc.msg})
		got := err.Error()
		if strings.Contains(got, "SECRET") {
			t.Errorf("message leaks the value: %q", got)
		}
		want := "store: insert record: mysql error 1366 (22007)"
		if tc.col != "" {
			want += " on column " + tc.col
		}
		if got != want {
			t.Errorf("Error() = %q, want %q", got, want)
		}
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Message != tc.msg {
			t.Error("original server error not reachable")
		}
	}
}

// Real server errors, provoked on the real server, must classify right.
func TestClassifyRealServerErrors(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	exec := func(q string, args ...any) error {
		_, err := s.DB.ExecContext(ctx, q, args...)
		return err
	}
	const ins = `INSERT INTO patient_records (local_record_id, patient_id, payload, payload_hash, device_time) VALUES (?, ?, '{}', REPEAT('a', 64), ?)`
	bad := []struct {
		name string
		code uint16
		err  error
	}{
		{"too long", 1406, exec(ins, "k1", strings.Repeat("p", 65), nil)},
		{"bad utf8", 1366, exec(ins, "k2", "\xff\xfe", nil)},
		{"bad datetime", 1292, exec(ins, "k3", "p", "2025-13-45 99:00:00")},
		{"null", 1048, exec(ins, "k4", nil, nil)},
		{"check constraint", 4025, exec(`INSERT INTO sync_quarantine (reason, status) VALUES ('r', 'bogus')`)},
	}
	for _, b := range bad {
		var me *mysql.MySQLError
		// MySQL 8 numbers the CHECK failure 3819.
		if !errors.As(b.err, &me) || (me.Number != b.code && !(b.code == erCheckViolatedMariaDB && me.Number == erCheckViolatedMySQL)) {
			t.Errorf("%s: got %v, want MySQL error %d", b.name, b.err, b.code)
			continue
		}
		if !IsBadData(b.err) || IsTransient(b.err) {
			t.Errorf("%s: IsBadData=%v IsTransient=%v", b.name, IsBadData(b.err), IsTransient(b.err))
		}
	}
	dup := exec(ins, "dup", "p", nil)
	if dup != nil {
		t.Fatal(dup)
	}
	if err := exec(ins, "dup", "p", nil); err == nil || IsBadData(err) || IsTransient(err) {
		t.Errorf("duplicate entry classified wrong: %v", err)
	}
	if err := exec("SELEC 1"); err == nil || IsBadData(err) || IsTransient(err) {
		t.Errorf("syntax error classified wrong: %v", err)
	}

	// A deadline hit while the server works.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	var one int
	err := s.DB.QueryRowContext(short, "SELECT SLEEP(5)").Scan(&one)
	if err == nil || !IsTransient(err) {
		t.Errorf("deadline: %v, IsTransient=%v", err, IsTransient(err))
	}
}

// Insert with a value longer than its column (bypassing Parse) fails as bad
// data without the value in the message, and stores nothing.
func TestInsertBadDataNotLeaked(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	for _, pid := range []string{"SECRET-" + strings.Repeat("9", 70), "SECRET-\xff\xfe"} {
		ev := mustParse(t, "rec-bad", "m", body("P1", "n", "1"))
		ev.PatientID = pid
		_, err := s.Insert(ctx, ev)
		if err == nil || !IsBadData(err) || IsTransient(err) {
			t.Fatalf("Insert: %v (bad=%v transient=%v)", err, IsBadData(err), IsTransient(err))
		}
		if strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "patient_id") {
			t.Errorf("error %q leaks the value or lacks the column", err)
		}
	}
	if _, ok, err := s.Record(ctx, "rec-bad"); ok || err != nil {
		t.Errorf("bad record stored: %v %v", ok, err)
	}
}

// lockTable creates a two-row table to take row locks on.
func lockTable(t *testing.T, s *Store) {
	t.Helper()
	ctx := testCtx(t)
	for _, q := range []string{
		"CREATE TABLE locks (id INT PRIMARY KEY) ENGINE=InnoDB",
		"INSERT INTO locks VALUES (1), (2)",
	} {
		if _, err := s.DB.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
}

func beginOn(t *testing.T, ctx context.Context, db *sql.DB, setup ...string) *sql.Tx {
	t.Helper()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	for _, q := range setup {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	return tx
}

func lockRow(ctx context.Context, tx *sql.Tx, id int) error {
	var got int
	return tx.QueryRowContext(ctx, "SELECT id FROM locks WHERE id = ? FOR UPDATE", id).Scan(&got)
}

// waitLockWait blocks until some transaction of this server waits for a
// row lock, so the next step really closes a cycle.
func waitLockWait(t *testing.T, ctx context.Context, db *sql.DB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.INNODB_TRX t
			JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
			WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no transaction started waiting for the lock")
}

func TestClassifyRealDeadlock(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	lockTable(t, s)
	ctx := testCtx(t)
	tx1, tx2 := beginOn(t, ctx, s.DB), beginOn(t, ctx, s.DB)
	if err := lockRow(ctx, tx1, 1); err != nil {
		t.Fatal(err)
	}
	if err := lockRow(ctx, tx2, 2); err != nil {
		t.Fatal(err)
	}
	err1 := make(chan error, 1)
	go func() { err1 <- lockRow(ctx, tx1, 2) }()
	waitLockWait(t, ctx, s.DB)
	err2 := lockRow(ctx, tx2, 1)
	if err2 == nil {
		// InnoDB chose tx1 as the victim.
		err2 = <-err1
	} else {
		_ = tx2.Rollback() // let tx1 finish
		<-err1
	}
	var me *mysql.MySQLError
	if !errors.As(err2, &me) || me.Number != 1213 {
		t.Fatalf("got %v, want deadlock 1213", err2)
	}
	if !IsTransient(err2) || IsBadData(err2) || !isDeadlock(wrap("x", err2)) {
		t.Errorf("deadlock classified wrong: %v", err2)
	}
}

func TestClassifyRealLockWaitTimeout(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	lockTable(t, s)
	ctx := testCtx(t)
	holder := beginOn(t, ctx, s.DB)
	if err := lockRow(ctx, holder, 1); err != nil {
		t.Fatal(err)
	}
	waiter := beginOn(t, ctx, s.DB, "SET SESSION innodb_lock_wait_timeout = 1")
	err := lockRow(ctx, waiter, 1)
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1205 {
		t.Fatalf("got %v, want lock wait timeout 1205", err)
	}
	if !IsTransient(err) || IsBadData(err) || isDeadlock(err) {
		t.Errorf("lock wait timeout classified wrong: %v", err)
	}
}

// connectionID returns the server thread ID behind q's connection.
func connectionID(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id)
	return id, err
}

// kill ends a server connection from another connection and waits until it
// is gone, so whatever the victim sends next surely fails.
func kill(ctx context.Context, admin *sql.DB, id int64) error {
	if _, err := admin.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var n int
		if err := admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", id).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
	return fmt.Errorf("connection %d still alive after KILL", id)
}

func TestClassifyRealKilledConnection(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	admin := storetest.AdminDB(t)
	ctx := testCtx(t)
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	id, err := connectionID(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := kill(ctx, admin, id); err != nil {
		t.Fatal(err)
	}
	_, err = conn.ExecContext(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("statement on a killed connection succeeded")
	}
	if !IsTransient(err) || IsBadData(err) {
		t.Errorf("killed connection: %v (%T) not classified transient", err, err)
	}
}

// A COMMIT that fails must surface as an error, with nothing stored: the
// caller acks only on success, so a swallowed commit error loses a message.
func TestInsertCommitFailureReturned(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	admin := storetest.AdminDB(t)
	ctx := testCtx(t)

	existing := mustParse(t, "rec-conflict", "m0", body("P1", "first", "1"))
	if out, err := s.Insert(ctx, existing); err != nil || out != Inserted {
		t.Fatalf("setup insert: %v %v", out, err)
	}
	cases := []struct {
		name string
		ev   syncevent.Event
		want Outcome
	}{
		{"insert", mustParse(t, "rec-new", "m1", body("P1", "n", "1")), Inserted},
		{"conflict", mustParse(t, "rec-conflict", "m2", body("P1", "second", "1")), Conflict},
	}
	for _, tc := range cases {
		// Tests in this function share s, so the hook is set and cleared
		// around each call, never concurrently.
		killed := false
		s.beforeCommit = func(ctx context.Context, tx *sql.Tx) error {
			id, err := connectionID(ctx, tx)
			if err != nil {
				return err
			}
			killed = true
			return kill(ctx, admin, id)
		}
		_, err := s.Insert(ctx, tc.ev)
		s.beforeCommit = nil
		if !killed {
			t.Fatalf("%s: hook did not run", tc.name)
		}
		if err == nil {
			t.Fatalf("%s: Insert succeeded although its connection died before COMMIT", tc.name)
		}
		if !IsTransient(err) || !strings.Contains(err.Error(), "commit") {
			t.Errorf("%s: commit error %v not transient or not named", tc.name, err)
		}
		row, _, rerr := s.Record(ctx, tc.ev.Key)
		if rerr != nil {
			t.Fatal(rerr)
		}
		conflicts, cerr := s.Conflicts(ctx, tc.ev.Key)
		if cerr != nil {
			t.Fatal(cerr)
		}
		if (tc.want == Inserted && row.ID != 0) || len(conflicts) != 0 {
			t.Errorf("%s: failed commit left data: row %d, %d conflicts", tc.name, row.ID, len(conflicts))
		}
		// The retry the caller makes then succeeds with the right outcome.
		if out, err := s.Insert(ctx, tc.ev); err != nil || out != tc.want {
			t.Errorf("%s: retry = %v, %v; want %s", tc.name, out, err, tc.want)
		}
	}
}

// A deadlock victim is retried inside Insert (the transaction was rolled
// back whole); other errors are returned at once.
func TestInsertRetriesDeadlockOnly(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := testCtx(t)
	cases := []struct {
		name      string
		failures  int
		err       error
		attempts  int
		wantError bool
	}{
		{"deadlock once", 1, &mysql.MySQLError{Number: 1213}, 2, false},
		{"deadlock always", 100, &mysql.MySQLError{Number: 1213}, maxInsertAttempts, true},
		{"lock wait timeout", 100, &mysql.MySQLError{Number: 1205}, 1, true},
	}
	for i, tc := range cases {
		attempts := 0
		s.beforeCommit = func(context.Context, *sql.Tx) error {
			attempts++
			if attempts <= tc.failures {
				return tc.err
			}
			return nil
		}
		ev := mustParse(t, fmt.Sprintf("retry-%d", i), "m", body("P1", "n", "1"))
		out, err := s.Insert(ctx, ev)
		s.beforeCommit = nil
		if attempts != tc.attempts || (err != nil) != tc.wantError {
			t.Errorf("%s: %d attempts, err %v; want %d attempts, error %v", tc.name, attempts, err, tc.attempts, tc.wantError)
		}
		_, stored, rerr := s.Record(ctx, ev.Key)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if stored != !tc.wantError || (!tc.wantError && out != Inserted) {
			t.Errorf("%s: outcome %q, stored %v", tc.name, out, stored)
		}
	}
}

func TestClassifyClasses(t *testing.T) {
	t.Parallel()
	my := func(n uint16) error { return wrap("insert record", &mysql.MySQLError{Number: n, Message: "x"}) }
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, ClassNone},
		{"too long", my(1406), ClassBadData},
		{"bad string", my(1366), ClassBadData},
		{"packet too large (server)", my(1153), ClassBadData},
		{"wrong arguments", my(1210), ClassBadData},
		{"row size", my(1118), ClassBadData},
		{"trigger SIGNAL", my(1644), ClassBadData},
		{"packet too large (driver)", fmt.Errorf("exec: %w", mysql.ErrPktTooLarge), ClassBadData},
		{"invalid event", &syncevent.InvalidError{Reason: syncevent.ReasonBadJSON}, ClassBadData},
		{"table denied", my(1142), ClassEnvironment},
		{"db denied", my(1044), ClassEnvironment},
		{"login denied", my(1045), ClassEnvironment},
		{"unknown db", my(1049), ClassEnvironment},
		{"no table", my(1146), ClassEnvironment},
		{"read only", my(1290), ClassEnvironment},
		{"read only mode", my(1836), ClassEnvironment},
		{"deadlock", my(1213), ClassTransient},
		{"bad conn", driver.ErrBadConn, ClassTransient},
		{"canceled", fmt.Errorf("exec: %w", context.Canceled), ClassTransient},
		{"syntax", my(1064), ClassUnclassified},
		{"duplicate entry", my(1062), ClassUnclassified},
		{"plain", errors.New("boom"), ClassUnclassified},
	}
	for _, tc := range tests {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify = %v, want %v", tc.name, got, tc.want)
		}
	}
	if n := ErrorNumber(mysql.ErrPktTooLarge); n != 1153 {
		t.Errorf("ErrorNumber(ErrPktTooLarge) = %d, want 1153", n)
	}
	if n := ErrorNumber(my(1644)); n != 1644 {
		t.Errorf("ErrorNumber = %d, want 1644", n)
	}
}

// The permanent and environment errors of issue 11, provoked on the real
// server through the store's own Insert where the store can meet them.
func TestClassifyRealPermanentAndEnvironment(t *testing.T) {
	t.Parallel()
	s, dsn := newStore(t)
	ctx := testCtx(t)

	// A trigger that refuses some records: permanent for that record.
	if _, err := s.DB.ExecContext(ctx, `CREATE TRIGGER refuse_blocked BEFORE INSERT ON patient_records
		FOR EACH ROW BEGIN
			IF NEW.patient_id = 'BLOCKED' THEN
				SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'patient blocked by policy';
			END IF;
		END`); err != nil {
		t.Fatal(err)
	}
	ev := mustParse(t, "rec-sig", "m-sig", body("BLOCKED", "n", "1"))
	_, err := s.Insert(ctx, ev)
	if Classify(err) != ClassBadData || ErrorNumber(err) != 1644 {
		t.Errorf("trigger SIGNAL: %v classified %v (number %d), want bad_data 1644", err, Classify(err), ErrorNumber(err))
	}
	if _, err := s.Insert(ctx, mustParse(t, "rec-ok", "m-ok", body("P1", "n", "1"))); err != nil {
		t.Fatalf("a record the trigger lets through: %v", err)
	}

	// The driver refuses a packet over its max_allowed_packet before
	// sending it (a statement without arguments goes as one packet).
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	small := cfg.Clone()
	small.MaxAllowedPacket = 4 << 10
	smallDB, err := Open(ctx, small.FormatDSN(), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = smallDB.Close() })
	_, err = smallDB.ExecContext(ctx, "SELECT '"+strings.Repeat("n", 8<<10)+"'")
	if Classify(err) != ClassBadData || ErrorNumber(err) != 1153 {
		t.Errorf("packet too large (driver): %v classified %v, want bad_data 1153", err, Classify(err))
	}
	// The server refuses an argument over its own max_allowed_packet.
	var maxPacket int
	if err := s.DB.QueryRowContext(ctx, "SELECT @@max_allowed_packet").Scan(&maxPacket); err != nil {
		t.Fatal(err)
	}
	if maxPacket <= 32<<20 {
		// On a pool of its own: the server drops the connection after
		// refusing the packet, and the checks below must not meet it.
		bigDB, err := Open(ctx, dsn, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bigDB.Close() })
		var n int
		err = bigDB.QueryRowContext(ctx, "SELECT LENGTH(?)", strings.Repeat("n", maxPacket+1)).Scan(&n)
		if Classify(err) != ClassBadData {
			t.Errorf("packet too large (server): %v (number %d) classified %v, want bad_data", err, ErrorNumber(err), Classify(err))
		}
	}

	// Environment: a missing table, a user without rights, a missing
	// database.
	_, err = s.DB.ExecContext(ctx, "INSERT INTO no_such_table VALUES (1)")
	if Classify(err) != ClassEnvironment {
		t.Errorf("missing table: %v classified %v", err, Classify(err))
	}
	admin := storetest.AdminDB(t)
	user := "sbro_" + strings.TrimPrefix(cfg.DBName, "sbtest_")
	if len(user) > 32 {
		user = user[:32]
	}
	for _, q := range []string{
		"CREATE USER '" + user + "'@'%' IDENTIFIED BY 'pw'",
		"GRANT SELECT ON `" + cfg.DBName + "`.* TO '" + user + "'@'%'",
	} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "DROP USER IF EXISTS '"+user+"'@'%'") })
	ro := cfg.Clone()
	ro.User, ro.Passwd = user, "pw"
	roDB, err := Open(ctx, ro.FormatDSN(), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = roDB.Close() })
	_, err = New(roDB).Insert(ctx, mustParse(t, "rec-ro", "m-ro", body("P3", "n", "1")))
	if Classify(err) != ClassEnvironment || ErrorNumber(err) != 1142 {
		t.Errorf("insert without rights: %v classified %v, want environment 1142", err, Classify(err))
	}
	missing := cfg.Clone()
	missing.DBName = cfg.DBName + "_missing"
	mdb, err := sql.Open("mysql", missing.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mdb.Close() })
	err = mdb.PingContext(ctx)
	if Classify(err) != ClassEnvironment || ErrorNumber(err) != 1049 {
		t.Errorf("unknown database: %v classified %v, want environment 1049", err, Classify(err))
	}
}
