// Package storetest gives each test its own throw-away database on the
// real MariaDB/MySQL server used by the project's tests.
//
// The server is 127.0.0.1:3306, user root, empty password, unless
// SYNCBRIDGE_TEST_MYSQL_ADDR names another host:port. An unreachable server
// fails the test with a clear message: a database test that silently
// skips proves nothing.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// DefaultAddr is the test server when SYNCBRIDGE_TEST_MYSQL_ADDR is unset.
const DefaultAddr = "127.0.0.1:3306"

// Addr returns the host:port of the test server.
func Addr() string {
	if a := os.Getenv("SYNCBRIDGE_TEST_MYSQL_ADDR"); a != "" {
		return a
	}
	return DefaultAddr
}

// AdminDB returns a small pool connected to the server without a default
// database (for CREATE/DROP DATABASE, KILL, PROCESSLIST), closed at cleanup.
func AdminDB(t testing.TB) *sql.DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", Addr()
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 5*time.Second, 30*time.Second, 30*time.Second
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatalf("storetest: driver config: %v", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("storetest: MariaDB/MySQL unreachable at %s as root with empty password: %v\n"+
			"start it (e.g. `service mariadb start`) or point SYNCBRIDGE_TEST_MYSQL_ADDR at a server", Addr(), err)
	}
	return db
}

// NewDatabase creates a database named sbtest_<random hex>, drops it when
// the test ends, and returns a DSN for it (no options: callers such as
// store.Open add their own).
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := AdminDB(t)
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("storetest: random name: %v", err)
	}
	name := "sbtest_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"); err != nil {
		t.Fatalf("storetest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("storetest: drop database %s: %v", name, err)
		}
	})
	return fmt.Sprintf("root@tcp(%s)/%s", Addr(), name)
}

// RoundTrips is a round-trip count of the connections opened through a DSN
// from CountRoundTrips.
type RoundTrips struct{ n atomic.Int64 }

// Load returns the round trips so far.
func (r *RoundTrips) Load() int64 { return r.n.Load() }

// tripConn counts a round trip each time the client, having written,
// turns to read the server's answer.
type tripConn struct {
	net.Conn
	wrote atomic.Bool
	trips *RoundTrips
}

func (c *tripConn) Write(p []byte) (int, error) {
	c.wrote.Store(true)
	return c.Conn.Write(p)
}

func (c *tripConn) Read(p []byte) (int, error) {
	if c.wrote.Swap(false) {
		c.trips.n.Add(1)
	}
	return c.Conn.Read(p)
}

var dialNets atomic.Int64

// DialThrough returns dsn, which dials TCP (as NewDatabase makes it),
// rewritten to dial through wrap: every connection the driver opens with
// it is wrap's. Tests count their own traffic this way, in the writing
// goroutine and with no proxy in between.
func DialThrough(dsn string, wrap func(net.Conn) net.Conn) string {
	if !strings.Contains(dsn, "@tcp(") {
		panic("storetest: DialThrough needs a DSN that dials tcp(...), got another")
	}
	name := fmt.Sprintf("storetest_net_%d", dialNets.Add(1))
	mysql.RegisterDialContext(name, func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return wrap(c), nil
	})
	return strings.Replace(dsn, "@tcp(", "@"+name+"(", 1)
}

// CountRoundTrips returns dsn (as NewDatabase makes it) rewritten to dial
// through a counter of client/server round trips: what batching saves.
func CountRoundTrips(dsn string) (string, *RoundTrips) {
	trips := new(RoundTrips)
	return DialThrough(dsn, func(c net.Conn) net.Conn { return &tripConn{Conn: c, trips: trips} }), trips
}

// Questions returns the number of statements the server has run for the
// session of conn (SHOW SESSION STATUS 'Questions'), the reading itself
// included. A session counter is immune to other tests on the shared
// server.
func Questions(ctx context.Context, conn interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int64, error) {
	var name string
	var n int64
	err := conn.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Questions'").Scan(&name, &n)
	return n, err
}
