// Package testenv is the shared harness for integration tests: a real
// Temporal server shared by the test binary, and per test a fresh MariaDB
// database, a RocketMQ emulator on its own port and a unique task queue.
//
// A package using it declares
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// and calls New(t) in each integration test. The server starts on the first
// New, so packages whose selected tests need none pay nothing.
//
// With SYNCBRIDGE_TEST_TEMPORAL_ADDRESS set (host:port of a frontend, e.g.
// the rehearsal cluster's 127.0.0.1:17233) no server is started: every Env
// uses that cluster's namespace SYNCBRIDGE_TEST_TEMPORAL_NAMESPACE (default
// "default"). Each test still gets its own task queue, emulator and
// database. The namespace must exist and have syncbridge's search
// attributes registered (scripts/rehearsal.sh up does both); tests that
// wait for an old build to drain need the cluster's drainage intervals
// short (rehearsal up --short-drainage). The harness never registers
// anything on an external cluster.
//
//	scripts/rehearsal.sh up --workers 0 --short-drainage
//	SYNCBRIDGE_TEST_TEMPORAL_ADDRESS=127.0.0.1:17233 SYNCBRIDGE_TEST_TEMPORAL_NAMESPACE=syncbridge \
//	  go test -count=1 -p 1 -run 'TestUpgradeAndRollbackMidDrain' ./internal/workerapp
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/syncbridge/syncbridge/internal/codec"
	"github.com/syncbridge/syncbridge/internal/devstack"
	"github.com/syncbridge/syncbridge/internal/mqemu"
	"github.com/syncbridge/syncbridge/internal/searchattr"
)

// Environment variables read by the harness.
const (
	// MySQLDSNEnv is the admin DSN of the MariaDB/MySQL server tests create
	// their databases on. Default "root@tcp(127.0.0.1:3306)/".
	MySQLDSNEnv = "SYNCBRIDGE_TEST_MYSQL_DSN"
	// TemporalLogEnv is the least severe Temporal server log shown on
	// stderr: debug, info, warn or error. Default error: the server's
	// warnings are mostly about pollers the tests cancel.
	TemporalLogEnv = "SYNCBRIDGE_TEST_TEMPORAL_LOG"
	// TemporalAddressEnv names an external Temporal frontend (host:port)
	// the tests use instead of the embedded server. Default: unset, the
	// embedded server.
	TemporalAddressEnv = "SYNCBRIDGE_TEST_TEMPORAL_ADDRESS"
	// TemporalNamespaceEnv is the namespace on TemporalAddressEnv's
	// cluster. Default "default"; ignored without TemporalAddressEnv.
	TemporalNamespaceEnv = "SYNCBRIDGE_TEST_TEMPORAL_NAMESPACE"
)

const defaultMySQLDSN = "root@tcp(127.0.0.1:3306)/"

// MariaDBAdminDSN is the DSN tests create and drop databases with.
func MariaDBAdminDSN() string {
	if v := os.Getenv(MySQLDSNEnv); v != "" {
		return v
	}
	return defaultMySQLDSN
}

// shared is the package's Temporal server, started by the first New.
var shared struct {
	mu       sync.Mutex
	inMain   bool
	started  bool
	temporal *devstack.Temporal
	err      error
}

// Main runs the package's tests and then stops the Temporal server if a test
// started it. It exits the process with the tests' status (or 1 if the
// server fails to stop, since a stuck server hides other failures).
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()

	code := m.Run()
	removeWorkerBinary()

	shared.mu.Lock()
	tp := shared.temporal
	shared.mu.Unlock()
	if tp != nil {
		if err := tp.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stopping Temporal: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// temporalServer returns the frontend address and namespace the package's
// tests use: the external cluster's when TemporalAddressEnv is set, else
// the shared embedded server's, started on first use.
func temporalServer(t testing.TB) (addr, namespace string) {
	t.Helper()
	if addr := os.Getenv(TemporalAddressEnv); addr != "" {
		ns := os.Getenv(TemporalNamespaceEnv)
		if ns == "" {
			ns = "default"
		}
		return addr, ns
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		t.Fatal("testenv: the package needs `func TestMain(m *testing.M) { testenv.Main(m) }` so the shared Temporal server is stopped")
	}
	if !shared.started {
		shared.started = true
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.temporal, shared.err = devstack.StartTemporal(ctx, devstack.TemporalOptions{
			FrontendAddr:     "127.0.0.1:0",
			SearchAttributes: searchattr.All(),
			Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: temporalLogLevel()})),
			LogLevel:         temporalLogLevel(),
		})
	}
	if shared.err != nil {
		t.Fatalf("testenv: start Temporal: %v", shared.err)
	}
	return shared.temporal.Address(), shared.temporal.Namespace()
}

func temporalLogLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv(TemporalLogEnv))); err != nil {
		return slog.LevelError
	}
	return l
}

// Options adjusts one Env.
type Options struct {
	// MQ overrides the emulator's config (e.g. InvisibleTime, Faults,
	// MaxLongPoll). New adds the Env's credential, instance and topic and,
	// when nil, a Logger writing to the test log.
	MQ mqemu.Config
	// Plaintext turns payload encryption off for the Env's client and
	// leaves PayloadKey empty. The default is production's: encrypted.
	Plaintext bool
}

// Env is one test's view of the harness. Everything in it is closed or
// dropped at the test's cleanup.
type Env struct {
	TemporalAddr, Namespace string
	// Client is connected to Namespace with the pipeline's converters:
	// it reads and writes payloads encrypted with PayloadKey, as the
	// workers and the starter do.
	Client client.Client
	// RawClient has no codec: it sees history as the server stores it.
	RawClient client.Client
	// PayloadKey is a fresh base64 AES-256 key (SYNCBRIDGE_PAYLOAD_KEY),
	// PayloadKeyID its ID; both empty with Options.Plaintext.
	PayloadKey, PayloadKeyID string
	// Codec is the codec of PayloadKey for Namespace; nil with Plaintext.
	Codec *codec.AESGCM
	// TaskQueue is unique to the test, so workers of earlier tests never
	// pick up its tasks.
	TaskQueue string

	// DB is a fresh, empty MariaDB database; DSN reaches it with
	// parseTime=true.
	DB          *sql.DB
	DSN, DBName string

	MQ       *mqemu.Emulator
	MQServer *mqemu.Server
	// MQURL, Topic, Group, Tag, InstanceID, AccessKey and SecretKey are
	// what a consumer of the emulator needs.
	MQURL, Topic, Group, Tag, InstanceID, AccessKey, SecretKey string

	// Logger writes to the test log (shown on failure or with -v) until
	// the test ends, and discards after.
	Logger *slog.Logger
}

// New builds an Env for t. It fails the test, naming what is missing, when
// a part cannot start (MariaDB unreachable, ports, Temporal).
func New(t testing.TB, opts ...Options) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test (Temporal server, emulator, MariaDB): skipped in -short mode")
	}
	var o Options
	if len(opts) > 1 {
		t.Fatal("testenv.New: at most one Options")
	}
	if len(opts) == 1 {
		o = opts[0]
	}
	logger := slog.New(newTestHandler(t))
	addr, namespace := temporalServer(t)
	suffix := randomHex(t, 6)
	e := &Env{
		TemporalAddr: addr,
		Namespace:    namespace,
		TaskQueue:    "test-" + sanitize(t.Name()) + "-" + suffix,
		Topic:        devstack.DefaultTopic,
		Group:        devstack.DefaultGroup,
		Tag:          devstack.DefaultTag,
		InstanceID:   devstack.DefaultInstanceID,
		AccessKey:    devstack.DefaultAccessKey,
		SecretKey:    devstack.DefaultSecretKey,
		Logger:       logger,
	}

	raw, err := client.Dial(client.Options{
		HostPort:  e.TemporalAddr,
		Namespace: e.Namespace,
		Logger:    sdklog.NewStructuredLogger(logger.With("component", "temporal-client")),
	})
	if err != nil {
		t.Fatalf("testenv: dial Temporal at %s: %v", e.TemporalAddr, err)
	}
	e.RawClient = raw
	t.Cleanup(raw.Close)
	e.Client = raw
	if !o.Plaintext {
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			t.Fatalf("testenv: payload key: %v", err)
		}
		e.PayloadKey = base64.StdEncoding.EncodeToString(secret)
		e.PayloadKeyID = "test-" + suffix
		ring, err := codec.NewKeyring(codec.Key{ID: e.PayloadKeyID, Secret: secret})
		if err != nil {
			t.Fatalf("testenv: keyring: %v", err)
		}
		e.Codec = ring.Codec(e.Namespace)
		c, err := client.NewClientFromExisting(raw, client.Options{
			Namespace:        e.Namespace,
			DataConverter:    e.Codec.DataConverter(),
			FailureConverter: e.Codec.FailureConverter(),
			Logger:           sdklog.NewStructuredLogger(logger.With("component", "temporal-client")),
		})
		if err != nil {
			t.Fatalf("testenv: client with codec: %v", err)
		}
		e.Client = c
		t.Cleanup(c.Close)
	}

	e.openDatabase(t)
	e.startMQ(t, o.MQ, logger.With("component", "mqemu"))
	return e
}

// openDatabase creates sbtest_<random> and drops it at cleanup.
func (e *Env) openDatabase(t testing.TB) {
	t.Helper()
	adminCfg, err := mysql.ParseDSN(MariaDBAdminDSN())
	if err != nil {
		// The parser's message may quote the DSN, password included.
		t.Fatalf("testenv: %s is not a valid go-sql-driver DSN (value not shown)", MySQLDSNEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := sql.Open("mysql", adminCfg.FormatDSN())
	if err != nil {
		t.Fatalf("testenv: MariaDB admin connection: %v", err)
	}
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		t.Fatalf("testenv: MariaDB at %s is unreachable (start it, or point %s at one): %v",
			adminCfg.Addr, MySQLDSNEnv, err)
	}
	e.DBName = "sbtest_" + randomHex(t, 8)
	// The name is generated hex, so quoting it is enough; placeholders
	// cannot name databases.
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+e.DBName+"`"); err != nil {
		admin.Close()
		t.Fatalf("testenv: create database %s: %v", e.DBName, err)
	}
	cfg := adminCfg.Clone()
	cfg.DBName = e.DBName
	cfg.ParseTime = true
	e.DSN = cfg.FormatDSN()
	db, err := sql.Open("mysql", e.DSN)
	if err != nil {
		t.Fatalf("testenv: open %s: %v", e.DBName, err)
	}
	e.DB = db
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("testenv: close %s: %v", e.DBName, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+e.DBName+"`"); err != nil {
			t.Errorf("testenv: drop database %s: %v", e.DBName, err)
		}
		if err := admin.Close(); err != nil {
			t.Errorf("testenv: close admin connection: %v", err)
		}
	})
}

func (e *Env) startMQ(t testing.TB, cfg mqemu.Config, logger *slog.Logger) {
	t.Helper()
	cfg.InstanceID = e.InstanceID
	cfg.Credentials = append(append([]mqemu.Credential(nil), cfg.Credentials...),
		mqemu.Credential{AccessKey: e.AccessKey, SecretKey: e.SecretKey})
	cfg.Topics = append(append([]string(nil), cfg.Topics...), e.Topic)
	if cfg.Logger == nil {
		cfg.Logger = logger
	}
	emu, err := mqemu.New(cfg)
	if err != nil {
		t.Fatalf("testenv: mq emulator: %v", err)
	}
	srv, err := mqemu.Serve("127.0.0.1:0", emu)
	if err != nil {
		_ = emu.Close()
		t.Fatalf("testenv: mq emulator server: %v", err)
	}
	e.MQ, e.MQServer, e.MQURL = emu, srv, srv.URL
	// Server first: it answers pending long polls, then the emulator goes.
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("testenv: close mq emulator server: %v", err)
		}
		if err := emu.Close(); err != nil {
			t.Errorf("testenv: close mq emulator: %v", err)
		}
	})
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: random: %v", err)
	}
	return hex.EncodeToString(b)
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// sanitize keeps task queue names readable in the Web UI and short enough
// for the server's limits.
func sanitize(name string) string {
	s := strings.Trim(unsafeChars.ReplaceAllString(name, "-"), "-")
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}
