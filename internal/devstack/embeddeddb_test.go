package devstack

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// TestEmbeddedDBSpeaksWhatThePipelineNeeds exercises the statements the
// pipeline relies on through the real driver: a unique key with INSERT ... ON
// DUPLICATE KEY UPDATE, transactions that commit and roll back, and DATETIME
// values read back as time.Time.
func TestEmbeddedDBSpeaksWhatThePipelineNeeds(t *testing.T) {
	d, err := StartEmbeddedDB("127.0.0.1:0", "", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	cfg, err := mysql.ParseDSN(d.DSN())
	if err != nil {
		t.Fatalf("DSN %q: %v", d.DSN(), err)
	}
	if cfg.DBName != DefaultDatabase || !cfg.ParseTime || cfg.User != "root" || cfg.Addr != d.Addr() {
		t.Fatalf("DSN %q", d.DSN())
	}
	db, err := sql.Open("mysql", d.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	mustExec := func(q string, args ...any) sql.Result {
		t.Helper()
		res, err := db.ExecContext(ctx, q, args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return res
	}
	mustExec(`CREATE TABLE records (
		id BIGINT AUTO_INCREMENT PRIMARY KEY,
		message_key VARCHAR(128) NOT NULL,
		body TEXT NOT NULL,
		received_at DATETIME(6) NOT NULL,
		UNIQUE KEY uq_message_key (message_key)
	)`)
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
	upsert := `INSERT INTO records (message_key, body, received_at) VALUES (?, ?, ?)
		ON DUPLICATE KEY UPDATE body = VALUES(body)`
	mustExec(upsert, "k1", "first", at)
	mustExec(upsert, "k1", "second", at)
	if _, err := db.ExecContext(ctx, `INSERT INTO records (message_key, body, received_at) VALUES (?, ?, ?)`, "k1", "dup", at); err == nil {
		t.Fatal("a plain duplicate insert must violate the unique key")
	} else if me := (*mysql.MySQLError)(nil); !errors.As(err, &me) || me.Number != 1062 {
		t.Fatalf("duplicate insert: want MySQL error 1062, got %v", err)
	}

	var n int
	var body string
	var got time.Time
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*), MAX(body), MAX(received_at) FROM records WHERE message_key = ?`, "k1").Scan(&n, &body, &got); err != nil {
		t.Fatal(err)
	}
	if n != 1 || body != "second" || !got.Equal(at) {
		t.Fatalf("after upserts: %d rows, body %q, time %v; want 1, second, %v", n, body, got, at)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, upsert, "k2", "rolled back", at); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, upsert, "k3", "committed", at); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	rows, err := db.QueryContext(ctx, `SELECT message_key FROM records ORDER BY message_key`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "k1,k3" {
		t.Fatalf("keys %v, want k1,k3 (k2 rolled back)", keys)
	}
}

func TestEmbeddedDBRefusesBusyPortAndFreesItOnClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if _, err := StartEmbeddedDB(addr, "", nil); err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("busy port: want an error naming %s, got %v", addr, err)
	}
	ln.Close()

	d, err := StartEmbeddedDB(addr, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still held after Close: %v", err)
	}
	ln.Close()
}
