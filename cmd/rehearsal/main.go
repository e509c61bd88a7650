// Command rehearsal runs syncbridge's production rehearsal: a Temporal
// cluster on PostgreSQL, a worker fleet, the emulator and the database,
// each its own process, and a drill that breaks them while a backlog
// drains. scripts/rehearsal.sh builds the binaries and calls it;
// docs/rehearsal.md says what it shows.
//
// Exit status: 0 success, 1 failure (a drill that lost, doubled or
// dead-lettered anything included), 2 usage error.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/syncbridge/syncbridge/internal/rehearsal"
	"github.com/syncbridge/syncbridge/internal/tcpproxy"
)

const usage = `Usage: rehearsal COMMAND [flags]

  up [--workers N] [--flood] [--short-drainage] [--dir DIR]
                                           start the cluster, print the exports;
                                           --workers 0: no workers (tests, runbook);
                                           --short-drainage: drained checked every 3 s
  status [--dir DIR]                       which process runs and answers
  drill [--messages N] [--faults LIST] [--dir DIR]
                                           drain a backlog while breaking things
  bench [--messages N] [--drain-messages N] [--flood-messages N] [--exceptions LIST] [--flood-rounds N]
        [--parts fleet,cluster,dev] [--dir DIR]
                                           fleet: per-key drain with 1, 2, 3 workers, then
                                           flood (needs up --workers 3); cluster, dev: the
                                           embedded-server benchmark's ceiling, lean and
                                           flood family against the cluster, then on the
                                           embedded server; a summary of both
  down [--dir DIR]                         stop everything
  proxy LISTEN TARGET                      (internal) the database proxy:
                                           SIGUSR1 cuts, SIGUSR2 restores
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "rehearsal", "directory for state, logs, the emulator's snapshot and pids")
	bin := fs.String("bin", "bin", "directory of the built binaries")
	repo := fs.String("repo", ".", "the syncbridge checkout (deploy/ is read from it)")
	mysqlAddr := fs.String("mysql", "127.0.0.1:3306", "MariaDB/MySQL standing in for PolarDB (root, empty password)")
	pg := fs.String("postgres", "127.0.0.1:5432", "PostgreSQL for Temporal (trust authentication for postgres)")
	pgCluster := fs.String("pg-cluster", "15/main", "the Debian PostgreSQL cluster drill restarts")
	workers := fs.Int("workers", 3, "up: worker processes")
	flood := fs.Bool("flood", false, "up: workers in flood mode (SYNCBRIDGE_FLOOD_MODE=true)")
	shortDrainage := fs.Bool("short-drainage", false, "up: the server checks worker-build drainage every 3 s, not 3 min (tests, runbook walks)")
	messages := fs.Int("messages", 20000, "drill: messages in the backlog (bench: per phase, default 3000)")
	faults := fs.String("faults", strings.Join(rehearsal.AllFaults, ","), "drill: faults, in order")
	dup := fs.Float64("dup", 0.05, "drill: the broker's duplicate delivery rate")
	cutFor := fs.Duration("cut-for", 15*time.Second, "drill: how long cut-db keeps the database away")
	timeout := fs.Duration("timeout", 40*time.Minute, "drill: give up after this long (bench: per fleet phase)")
	drainMessages := fs.Int("drain-messages", 0, "bench: BenchmarkDrain's ceiling and lean backlog (SYNCBRIDGE_BENCH_MESSAGES; 0: its default, 2000)")
	floodMessages := fs.Int("flood-messages", 0, "bench: BenchmarkDrain's flood family backlog (SYNCBRIDGE_BENCH_FLOOD_MESSAGES, at least 1000; 0: its default, 30000)")
	floodRounds := fs.Int("flood-rounds", 0, "bench: times the flood family runs its mirror-ordered pair per mix (SYNCBRIDGE_BENCH_FLOOD_ROUNDS; 0: its default, 1)")
	exceptions := fs.String("exceptions", "", "bench: the flood family's exception mixes in percent (SYNCBRIDGE_BENCH_EXCEPTIONS; empty: its default, 5,20)")
	parts := fs.String("parts", strings.Join(rehearsal.BenchParts, ","), "bench: which parts run, of fleet, cluster, dev")
	benchTimeout := fs.Duration("bench-timeout", 3*time.Hour, "bench: the benchmark binary's -test.timeout, per part")

	if args[0] == "proxy" {
		if len(args) != 3 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		return proxy(ctx, args[1], args[2], stderr)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rehearsal %s: unexpected argument %q\n", args[0], fs.Arg(0))
		return 2
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	var err error
	switch args[0] {
	case "up":
		err = rehearsal.Up(ctx, rehearsal.Options{Dir: abs(*dir), BinDir: abs(*bin), Repo: abs(*repo), Workers: *workers, Flood: *flood, ShortDrainage: *shortDrainage,
			MySQL: *mysqlAddr, PostgreSQL: *pg, PGCluster: *pgCluster, Out: stdout})
	case "status":
		err = rehearsal.Status(abs(*dir), stdout)
	case "down":
		err = rehearsal.Down(abs(*dir), stdout)
	case "drill":
		var rep rehearsal.DrillReport
		rep, err = rehearsal.Drill(ctx, rehearsal.DrillOptions{Dir: abs(*dir), Messages: *messages, Faults: splitList(*faults),
			DupRate: *dup, CutFor: *cutFor, Timeout: *timeout, MySQL: *mysqlAddr, Out: stdout})
		if err == nil {
			fmt.Fprint(stdout, "\ndrill report\n"+rep.String())
			if len(rep.Failures) > 0 {
				return 1
			}
		}
	case "bench":
		n := *messages
		if !isSet(fs, "messages") {
			n = 3000
		}
		ps := splitList(*parts)
		for _, p := range ps {
			if !slices.Contains(rehearsal.BenchParts, p) {
				fmt.Fprintf(stderr, "rehearsal bench: unknown part %q (fleet, cluster, dev)\n", p)
				return 2
			}
		}
		var res rehearsal.BenchAllResult
		res, err = rehearsal.BenchAll(ctx, rehearsal.BenchAllOptions{
			BenchOptions:  rehearsal.BenchOptions{Dir: abs(*dir), Messages: n, DupRate: *dup, Timeout: *timeout, Out: stdout},
			Repo:          abs(*repo),
			BinDir:        abs(*bin),
			MySQL:         *mysqlAddr,
			Parts:         ps,
			DrainMessages: *drainMessages,
			FloodMessages: *floodMessages,
			Exceptions:    *exceptions,
			FloodRounds:   *floodRounds,
			BenchTimeout:  *benchTimeout,
		})
		fmt.Fprint(stdout, "\n"+res.Summary())
	default:
		fmt.Fprintf(stderr, "rehearsal: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// proxy forwards LISTEN to TARGET until SIGTERM; SIGUSR1 cuts every
// connection and refuses new ones, SIGUSR2 accepts again. A process of its
// own, so the cut outlives the drill command that asked for it only as
// long as the drill wants.
func proxy(ctx context.Context, listen, target string, stderr io.Writer) int {
	p, err := tcpproxy.Listen(listen, target)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer p.Close()
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	for {
		select {
		case <-ctx.Done():
			return 0
		case s := <-sig:
			if s == syscall.SIGUSR1 {
				p.Cut()
				fmt.Fprintf(stderr, "%s proxy: cut\n", time.Now().UTC().Format(time.RFC3339))
			} else {
				p.Restore()
				fmt.Fprintf(stderr, "%s proxy: restored\n", time.Now().UTC().Format(time.RFC3339))
			}
		}
	}
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
