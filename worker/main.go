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

	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	if dev.enabled {
		err = runDev(ctx, dev, log, level)
	} else {
		var cfg config.Config
		if cfg, err = config.FromEnv(); err == nil {
			level.Set(cfg.LogLevel)
			err = workerapp.Run(ctx, cfg, workerapp.Options{Logger: log})
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
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
