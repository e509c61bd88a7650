package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"text/tabwriter"

	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/logging"
	"github.com/syncbridge/syncbridge/internal/store"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) int
}

var commands = []command{
	{"status", "what needs a person: drain, stuck records, conflicts, quarantine, pollers, workers", runStatus},
	{"reconcile", "re-drive records an incident left uncommitted; replay quarantine rows marked for replay", runReconcile},
	{"quarantine", "list, show, replay or discard quarantined messages", runQuarantine},
	{"conflicts", "list, show or resolve same-key/different-payload conflicts", runConflicts},
	{"inspect", "everything known about one key: workflow, history, row, conflicts, quarantine", runInspect},
	{"pollers", "start, stop (gracefully) or show the poller workflows", runPollers},
	{"deploy", "worker deployment versions: list, make current, ramp, roll back, tell when drained", runDeploy},
	{"publish", "publish realistic sync events to the broker, as edge devices do", runPublish},
	{"codec-server", "serve the codec endpoint the Web UI and temporal CLI decrypt payloads through", runCodecServer},
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: starter COMMAND [flags] [args]

Operator tool for the syncbridge worker fleet. Configuration comes from the
same environment variables as the worker (ROCKETMQ_*, ALIBABA_*, POLARDB_*,
TEMPORAL_*, SYNCBRIDGE_*).

Commands:
`)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, `
Run 'starter COMMAND --help' for a command's flags.
Exit status: 0 success, 1 operational failure, 2 usage error.
`)
}

// run is the whole program; main only supplies the process's context,
// arguments, environment and streams.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			e := &env{getenv: getenv, stdout: stdout, stderr: stderr}
			defer e.close()
			return c.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(stderr, "starter: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

// env is what a subcommand works with: streams, configuration and the
// connections it opened (lazily, so --help and usage errors need none).
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer

	cfg    config.Config
	loaded bool
	tc     client.Client
	db     *sql.DB
	st     *store.Store
}

func (e *env) config() (config.Config, error) {
	if !e.loaded {
		cfg, err := config.Load(e.getenv)
		if err != nil {
			return cfg, err
		}
		e.cfg, e.loaded = cfg, true
	}
	return e.cfg, nil
}

func (e *env) logger(cfg config.Config) *slog.Logger {
	// The SDK's info logs would drown the output; warnings and errors
	// still show. SYNCBRIDGE_LOG_LEVEL=debug shows everything.
	level := slog.LevelWarn
	if cfg.LogLevel < slog.LevelInfo {
		level = cfg.LogLevel
	}
	return logging.New(e.stderr, cfg.LogFormat, level)
}

// temporal connects with the pipeline's converter, so encrypted payloads
// (SYNCBRIDGE_PAYLOAD_KEY) are read and written like the workers do.
func (e *env) temporal(ctx context.Context) (client.Client, error) {
	if e.tc != nil {
		return e.tc, nil
	}
	cfg, err := e.config()
	if err != nil {
		return nil, err
	}
	tc, err := workerapp.Dial(ctx, cfg, e.logger(cfg), nil)
	if err != nil {
		return nil, err
	}
	e.tc = tc
	return tc, nil
}

func (e *env) store(ctx context.Context) (*store.Store, error) {
	if e.st != nil {
		return e.st, nil
	}
	cfg, err := e.config()
	if err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, cfg.DB.DSN, min(cfg.DB.MaxOpenConns, 4))
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", config.RedactDSN(cfg.DB.DSN), err)
	}
	e.db, e.st = db, store.New(db)
	return e.st, nil
}

func (e *env) close() {
	if e.tc != nil {
		e.tc.Close()
	}
	if e.db != nil {
		_ = e.db.Close()
	}
}

// fail prints an operational error and returns exitFailure.
func (e *env) fail(format string, args ...any) int {
	fmt.Fprintf(e.stderr, "starter: "+format+"\n", args...)
	return exitFailure
}

func (e *env) printf(format string, args ...any) { fmt.Fprintf(e.stdout, format, args...) }

// progress writes a progress line to stderr, so stdout stays the result.
func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.stderr, format+"\n", args...)
}

// flags is a subcommand's flag set with its help text. Usage and errors
// are printed by parse, so the flag package itself prints nothing.
type flags struct {
	*flag.FlagSet
	synopsis, about string
}

func newFlags(name, synopsis, about string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flags{FlagSet: fs, synopsis: synopsis, about: about}
}

func printUsage(w io.Writer, fs *flags) {
	fmt.Fprintf(w, "Usage: starter %s\n\n%s\n", fs.synopsis, strings.TrimSpace(fs.about))
	var all []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { all = append(all, f) })
	if len(all) == 0 {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	fmt.Fprintln(w, "\nFlags:")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, f := range all {
		name, u := flag.UnquoteUsage(f)
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "  --%s %s\t%s%s\n", f.Name, name, u, def)
	}
	tw.Flush()
}

// parse parses flags anywhere among the arguments (flag stops at the first
// positional one; operators write `resolve KEY --keep incoming`). It
// returns the positional arguments and, when parsing ends the command
// (help or a usage error), the exit status to return.
func parse(e *env, fs *flags, args []string) ([]string, int, bool) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			printUsage(e.stdout, fs)
			return nil, exitOK, true
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "starter %s: %v\n\n", fs.Name(), err)
			printUsage(e.stderr, fs)
			return nil, exitUsage, true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, false
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), 0, false
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageError prints msg and the command's usage to stderr.
func usageError(e *env, fs *flags, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "starter %s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	printUsage(e.stderr, fs)
	return exitUsage
}

// subcommand dispatches `starter NAME ACTION ...` for commands with
// actions (quarantine, conflicts, pollers, deploy).
type action struct {
	name, summary string
	run           func(ctx context.Context, e *env, args []string) int
}

func dispatch(ctx context.Context, e *env, name, about string, actions []action, args []string) int {
	help := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: starter %s ACTION [flags] [args]\n\n%s\n\nActions:\n", name, about)
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		for _, a := range actions {
			fmt.Fprintf(tw, "  %s\t%s\n", a.name, a.summary)
		}
		tw.Flush()
		fmt.Fprintf(w, "\nRun 'starter %s ACTION --help' for an action's flags.\n", name)
	}
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "starter %s: missing action\n\n", name)
		help(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		help(e.stdout)
		return exitOK
	}
	for _, a := range actions {
		if a.name == args[0] {
			return a.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "starter %s: unknown action %q\n\n", name, args[0])
	help(e.stderr)
	return exitUsage
}
