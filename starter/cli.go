package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// The scaffold every subcommand runs in. A command declares its name, help,
// flags, positional arguments and the connections it needs; the scaffold
// parses and checks the arguments, builds the connections once, runs the
// command and turns what it returns into the exit status. So --help, usage
// errors, exit statuses and --json behave alike in every command, and no
// command repeats the load-configuration, dial, open steps.
//
// The standard flag package is enough for a two-level tree of twenty-odd
// commands; a CLI library would bring completion, which operators (often
// in `docker compose run`) would rarely get to use, and its own help and
// flag syntax to keep the tests and docs/operations.md in step with.

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // configuration, a service, or what the command found
	exitUsage   = 2 // the command line itself
)

// needs are connections a command works with. Configuration is always
// loaded; these are built after the arguments are checked (so --help and
// usage errors connect to nothing) and closed when the command returns.
type needs uint8

const (
	needTemporal needs = 1 << iota // env.tc: client with the pipeline's data converter
	needStore                      // env.st: the database
	needBroker                     // env.mq: a producer on ROCKETMQ_TOPIC
)

// runFunc is a command's body. A usageError return exits 2 with the
// command's usage; any other error is printed and exits 1.
type runFunc func(ctx context.Context, e *env, args []string) error

// command is a subcommand, or a group of actions (quarantine, conflicts,
// pollers, deploy) when actions is set.
type command struct {
	name     string
	summary  string // one line in the parent's help
	synopsis string // the usage line after "starter"
	about    string // the help's text
	needs    needs
	// optional connections are built when they can be; a command reads
	// env.unavailable for why one is nil.
	optional needs
	args     argSpec
	// listing commands gain --json: one JSON document on stdout.
	listing bool
	// patientData commands can print payloads and patient fields: they
	// gain --show-payload and mask those unless it is given.
	patientData bool
	// setup registers the flags and returns the body; run is the body of
	// a command without flags.
	setup func(fs *flags) runFunc
	run   runFunc

	actions []*command
	path    string // "quarantine list"; set by link
}

// link names every command by its path from the root.
func (c *command) link(parent string) *command {
	c.path = strings.TrimSpace(parent + " " + c.name)
	for _, a := range c.actions {
		a.link(c.path)
	}
	return c
}

// cli is one invocation's outside world.
type cli struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// run is the whole program; main only supplies the process's context,
// arguments, environment and streams.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return cli{getenv, stdout, stderr}.enter(ctx, commandTree().link(""), args)
}

// enter runs c: a group picks its action from the first argument.
func (x cli) enter(ctx context.Context, c *command, args []string) int {
	if c.actions == nil {
		return x.leaf(ctx, c, args)
	}
	if len(args) == 0 {
		fmt.Fprintf(x.stderr, "%s: missing %s\n\n", c.title(), strings.ToLower(c.word()))
		c.groupHelp(x.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		c.groupHelp(x.stdout)
		return exitOK
	case "help": // `help quarantine list` is `quarantine list --help`
		if len(args) == 1 {
			c.groupHelp(x.stdout)
			return exitOK
		}
		return x.enter(ctx, c, append(args[1:len(args):len(args)], "--help"))
	}
	for _, a := range c.actions {
		if a.name == args[0] {
			return x.enter(ctx, a, args[1:])
		}
	}
	fmt.Fprintf(x.stderr, "%s: unknown %s %q\n\n", c.title(), strings.ToLower(c.word()), args[0])
	c.groupHelp(x.stderr)
	return exitUsage
}

// leaf parses and checks the arguments, connects, and runs the command.
func (x cli) leaf(ctx context.Context, c *command, args []string) int {
	fs := newFlags(c.path)
	body := c.run
	if c.setup != nil {
		body = c.setup(fs)
	}
	var asJSON, showPayload bool
	if c.listing {
		fs.BoolVar(&asJSON, "json", false, "print one JSON document instead of the text (camelCase fields; docs/operations.md, Starter)")
	}
	if c.patientData {
		fs.BoolVar(&showPayload, "show-payload", false, "show payloads and patient fields (patient data; masked otherwise)")
	}
	pos, err := fs.parseAnywhere(args)
	if errors.Is(err, flag.ErrHelp) {
		c.help(x.stdout, fs)
		return exitOK
	}
	if err == nil {
		err = c.args.check(pos)
	}
	for _, check := range fs.checks {
		if err == nil {
			err = check(pos)
		}
	}
	if err != nil {
		return x.exit(c, fs, asUsage(err))
	}
	e, err := x.connect(ctx, c)
	defer e.close()
	if err == nil {
		e.json, e.showPayload = asJSON, showPayload
		err = body(ctx, e, pos)
	}
	return x.exit(c, fs, err)
}

// exit reports err and maps it to the exit status.
func (x cli) exit(c *command, fs *flags, err error) int {
	var u usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &u):
		fmt.Fprintf(x.stderr, "%s: %s\n\n", c.title(), u.msg)
		c.help(x.stderr, fs)
		return exitUsage
	default:
		fmt.Fprintf(x.stderr, "%s: %v\n", c.title(), err)
		return exitFailure
	}
}

// usageError is a command line that can never work: exit 2, with the
// command's usage.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// asUsage makes a flag parsing or checking error a usage error.
func asUsage(err error) error {
	var u usageError
	if errors.As(err, &u) {
		return err
	}
	return usageError{err.Error()}
}

// argSpec is how many positional arguments a command takes; the zero
// value takes none.
type argSpec struct {
	min, max int // max < 0: no upper bound
	name     string
}

func exactly(n int, name string) argSpec { return argSpec{n, n, name} }
func atLeast(n int, name string) argSpec { return argSpec{n, -1, name} }
func atMost(n int, name string) argSpec  { return argSpec{0, n, name} }

func (a argSpec) check(pos []string) error {
	switch {
	case a.max == 0 && len(pos) > 0:
		return usagef("unexpected argument %q", pos[0])
	case a.min == a.max && len(pos) != a.min:
		return usagef("want exactly %s %s", count(a.min), a.name)
	case len(pos) < a.min:
		return usagef("want at least %s %s", count(a.min), a.name)
	case a.max > 0 && len(pos) > a.max:
		return usagef("at most %s %s", count(a.max), a.name)
	}
	return nil
}

func count(n int) string {
	if n >= 0 && n < 3 {
		return []string{"zero", "one", "two"}[n]
	}
	return fmt.Sprint(n)
}

// flags is a command's flag set, with the checks to run on the parsed
// values before anything connects. The flag package itself prints
// nothing: help and errors go through the scaffold.
type flags struct {
	*flag.FlagSet
	checks []func(args []string) error
}

func newFlags(name string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flags{FlagSet: fs}
}

// check adds a usage check of the parsed flags and positional arguments.
func (fs *flags) check(f func(args []string) error) { fs.checks = append(fs.checks, f) }

// enumVar is a string flag that accepts only the given values; *p holds
// the default.
func (fs *flags) enumVar(p *string, name, usage string, allowed ...string) {
	fs.Var(&enumValue{p, allowed}, name, usage)
}

type enumValue struct {
	p       *string
	allowed []string
}

func (v *enumValue) String() string {
	if v.p == nil { // the flag package's zero value, for the help's default
		return ""
	}
	return *v.p
}

func (v *enumValue) Set(s string) error {
	for _, a := range v.allowed {
		if s == a {
			*v.p = s
			return nil
		}
	}
	return fmt.Errorf("%q is not one of %s", s, strings.Join(v.allowed, ", "))
}

type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// parseAnywhere parses flags anywhere among the arguments (flag stops at
// the first positional one; operators write `resolve KEY --keep incoming`)
// and returns the positional arguments. After "--" all are positional.
func (fs *flags) parseAnywhere(args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// title is the prefix of the command's messages.
func (c *command) title() string {
	return strings.TrimSpace("starter " + c.path)
}

// word names what a group's first argument picks.
func (c *command) word() string {
	if c.path == "" {
		return "COMMAND"
	}
	return "ACTION"
}

// groupHelp lists a group's commands or actions.
func (c *command) groupHelp(w io.Writer) {
	word := c.word()
	fmt.Fprintf(w, "Usage: %s %s [flags] [args]\n\n%s\n\n%ss:\n", c.title(), word, strings.TrimSpace(c.about), strings.ToUpper(word[:1])+strings.ToLower(word[1:]))
	columns(w, func(tw io.Writer) {
		for _, a := range c.actions {
			fmt.Fprintf(tw, "  %s\t%s\n", a.name, a.summary)
		}
	})
	fmt.Fprintf(w, "\nRun '%s %s --help' (or '%s help %s') for its flags.\n", c.title(), word, c.title(), word)
	if c.path == "" {
		fmt.Fprint(w, exitStatusHelp)
	}
}

const exitStatusHelp = `Listing commands take --json: one JSON document on stdout (camelCase
field names, RFC 3339 UTC times, durations in seconds).
Exit status: 0 success, 1 operational failure (configuration, a service,
or what the command found), 2 usage error (unknown command or flag, bad
value, wrong arguments).
`

// help prints a command's usage, text and flags.
func (c *command) help(w io.Writer, fs *flags) {
	synopsis := c.synopsis
	if synopsis == "" {
		synopsis = c.path
	}
	fmt.Fprintf(w, "Usage: starter %s\n\n%s\n", synopsis, strings.TrimSpace(c.about))
	var all []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { all = append(all, f) })
	if len(all) == 0 {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	fmt.Fprintln(w, "\nFlags:")
	columns(w, func(tw io.Writer) {
		for _, f := range all {
			name, u := flag.UnquoteUsage(f)
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(tw, "  --%s %s\t%s%s\n", f.Name, name, u, def)
		}
	})
}
