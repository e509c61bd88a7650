package devstack

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/server"
	"github.com/dolthub/go-mysql-server/sql"
	"github.com/go-sql-driver/mysql"
	"github.com/sirupsen/logrus"
)

// DefaultDBAddr is where the embedded database listens: next to MySQL's
// 3306, so a local MySQL or MariaDB and the dev stack can run side by side.
const DefaultDBAddr = "127.0.0.1:3307"

// DefaultDatabase is the schema the embedded database starts with, matching
// the POLARDB_DATABASE default.
const DefaultDatabase = "syncbridge"

// EmbeddedDB is a MySQL-protocol server (go-mysql-server's in-memory engine)
// inside this process, so the pipeline runs with no database installed. All
// data lives in memory and is lost on Close. User root, no password.
type EmbeddedDB struct {
	srv      *server.Server
	addr     string
	database string
	done     chan struct{}

	closeOnce sync.Once
}

var quietEngineLogs sync.Once

// StartEmbeddedDB serves an in-memory database named database (default
// DefaultDatabase) on addr (default DefaultDBAddr; port 0 picks a free port).
// It returns once the port accepts connections.
func StartEmbeddedDB(addr, database string, logger *slog.Logger) (*EmbeddedDB, error) {
	if addr == "" {
		addr = DefaultDBAddr
	}
	if database == "" {
		database = DefaultDatabase
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// The engine logs through logrus's global logger, with query text and
	// error details that can carry row values (patient data). The client
	// already gets every error, so nothing is lost by dropping them. Only
	// go-mysql-server uses logrus in this module.
	quietEngineLogs.Do(func() {
		logrus.SetOutput(io.Discard)
		logrus.SetLevel(logrus.PanicLevel)
	})

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("devstack: embedded database address %s is not available (is another dev stack running? pick another port or pass a DSN): %w",
			addr, err)
	}
	db := memory.NewDatabase(database)
	db.EnablePrimaryKeyIndexes()
	provider := memory.NewDBProvider(db)
	engine := sqle.NewDefault(provider)
	srv, err := server.NewServer(server.Config{
		Protocol: "tcp",
		Address:  ln.Addr().String(),
		Listener: ln,
		// Never put statements into the engine's logs, whatever their level.
		MaxLoggedQueryLen: -1,
	}, engine, sql.NewContext, memory.NewSessionBuilder(provider), nil)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("devstack: embedded database: %w", err)
	}
	d := &EmbeddedDB{srv: srv, addr: ln.Addr().String(), database: database, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		_ = srv.Start() // returns when Close closes the listener
	}()
	logger.Warn("embedded database holds data in memory only; it is lost when the process exits (pass a DSN to keep it)",
		"addr", d.addr, "database", database)
	return d, nil
}

// Addr is the host:port the database listens on.
func (d *EmbeddedDB) Addr() string { return d.addr }

// DSN is a go-sql-driver/mysql DSN for the database, with parseTime=true.
func (d *EmbeddedDB) DSN() string {
	c := mysql.NewConfig()
	c.User = "root"
	c.Net = "tcp"
	c.Addr = d.addr
	c.DBName = d.database
	c.ParseTime = true
	return c.FormatDSN()
}

// Close stops accepting connections and waits for the accept loop to end.
// Open connections are cut when the process exits; the data goes with them.
func (d *EmbeddedDB) Close() error {
	var err error
	d.closeOnce.Do(func() {
		err = d.srv.Close()
		<-d.done
	})
	if err != nil {
		return fmt.Errorf("devstack: close embedded database: %w", err)
	}
	return nil
}
