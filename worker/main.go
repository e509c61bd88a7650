// Command worker runs a syncbridge worker: it drains RocketMQ into PolarDB
// through Temporal. Configuration comes from the environment (see
// docs/configuration.md); `worker -dev` instead starts a complete local
// stack in-process and runs the same worker against it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/logging"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

func main() {
	dev, err := parseFlags(os.Args[0], os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		os.Exit(2) // the flag package has printed the problem and the usage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log, level, err := newLogger(dev.enabled)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err) // no logger to say it in
		os.Exit(1)
	}
	if dev.enabled {
		err = runDev(ctx, dev, log, level)
	} else {
		err = run(ctx, log, level)
	}
	if err != nil {
		// Through the logger, so a collector reading JSON gets the reason
		// the process stopped as a line it can parse and alert on.
		log.Error("worker failed", "error", err)
		os.Exit(1)
	}
}

// newLogger builds the process logger before anything else logs: its format
// is read on its own (the dev stack logs before the configuration loads),
// its level is set once the configuration is loaded. It becomes slog's
// default, which the standard log package then writes through too.
func newLogger(dev bool) (*slog.Logger, *slog.LevelVar, error) {
	format, err := config.LogFormat(os.Getenv, dev)
	if err != nil {
		return nil, nil, err
	}
	level := new(slog.LevelVar)
	log := logging.New(os.Stderr, format, level)
	slog.SetDefault(log)
	return log, level, nil
}

// run is the production worker: configured by the environment alone.
func run(ctx context.Context, log *slog.Logger, level *slog.LevelVar) error {
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	level.Set(cfg.LogLevel)
	return workerapp.Run(ctx, cfg, workerapp.Options{Logger: log})
}

// parseFlags parses the worker's own flags on a private FlagSet: the dev
// stack links go-mysql-server, whose vitess packages register
// -mysql_auth_* and -mysql_clientcert_* on the global flag.CommandLine in
// their init functions, and `worker -h` must not offer those.
func parseFlags(name string, args []string, out io.Writer) (devFlags, error) {
	var dev devFlags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { usage(fs.Output(), fs) }
	fs.BoolVar(&dev.enabled, "dev", false, "start an embedded local stack (Temporal + Web UI, RocketMQ emulator, database) and run against it")
	dev.register(fs)
	err := fs.Parse(args)
	return dev, err
}
