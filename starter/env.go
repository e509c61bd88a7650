package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/logging"
	"github.com/syncbridge/syncbridge/internal/mqclient"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

// env is what a command works with: its streams, the configuration, and
// the connections it declared, built once by connect.
type env struct {
	stdout, stderr io.Writer
	json           bool // --json was given to a listing command
	showPayload    bool // --show-payload: print patient data unmasked

	cfg config.Config
	log *slog.Logger
	tc  client.Client
	db  *sql.DB
	st  *store.Store
	mq  mqclient.Producer

	// unavailable says why an optional connection is nil.
	unavailable map[needs]error
}

// connect loads the configuration and builds what c needs. The env it
// returns is never nil, so the caller can always close it.
func (x cli) connect(ctx context.Context, c *command) (*env, error) {
	e := &env{stdout: x.stdout, stderr: x.stderr, unavailable: map[needs]error{}}
	cfg, err := config.Load(x.getenv)
	if err != nil {
		return e, err
	}
	e.cfg, e.log = cfg, newLogger(cfg, x.stderr)
	for _, n := range []needs{needTemporal, needStore, needBroker} {
		switch {
		case c.needs&n != 0:
			if err := e.build(ctx, n); err != nil {
				return e, err
			}
		case c.optional&n != 0:
			if err := e.build(ctx, n); err != nil {
				e.unavailable[n] = err
			}
		}
	}
	return e, nil
}

func (e *env) build(ctx context.Context, n needs) error {
	switch n {
	case needTemporal:
		// The pipeline's converter, so encrypted payloads
		// (SYNCBRIDGE_PAYLOAD_KEY) are read and written as the workers do.
		tc, err := workerapp.Dial(ctx, e.cfg, e.log, nil)
		if err != nil {
			return err
		}
		e.tc = tc
	case needStore:
		db, err := store.Open(ctx, e.cfg.DB.DSN, min(e.cfg.DB.MaxOpenConns, 4))
		if err != nil {
			return fmt.Errorf("open database %s: %w", config.RedactDSN(e.cfg.DB.DSN), err)
		}
		e.db, e.st = db, store.New(db)
	case needBroker:
		e.mq = mqclient.NewProducer(mqclient.Endpoint{
			URL: e.cfg.MQ.Endpoint, AccessKey: e.cfg.MQ.AccessKey, SecretKey: e.cfg.MQ.SecretKey, InstanceID: e.cfg.MQ.InstanceID,
		}, e.cfg.MQ.Topic)
	}
	return nil
}

func (e *env) close() {
	if e.tc != nil {
		e.tc.Close()
	}
	if e.db != nil {
		_ = e.db.Close()
	}
}

// newLogger is the starter's one logging set-up (the Temporal SDK's and
// the codec server's logs). The SDK's info logs would drown the output;
// warnings and errors still show, SYNCBRIDGE_LOG_LEVEL=debug shows
// everything. Logs go to stderr: stdout is the result.
func newLogger(cfg config.Config, stderr io.Writer) *slog.Logger {
	level := slog.LevelWarn
	if cfg.LogLevel < slog.LevelInfo {
		level = cfg.LogLevel
	}
	return logging.New(stderr, cfg.LogFormat, level)
}

func (e *env) printf(format string, args ...any) { fmt.Fprintf(e.stdout, format, args...) }

// progress writes a progress line to stderr, so stdout stays the result.
func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.stderr, format+"\n", args...)
}

// output writes a listing's result: v as one JSON document with --json,
// else the text.
func (e *env) output(v any, text func()) error {
	if !e.json {
		text()
		return nil
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	return nil
}

// section starts a titled section of text output: "title: none" when it
// is empty (false: nothing to list), else the title line.
func (e *env) section(title string, n int) bool {
	if n == 0 {
		e.printf("%s: none\n", title)
		return false
	}
	e.printf("%s:\n", title)
	return true
}
