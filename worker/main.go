// Command worker runs a syncbridge worker: it drains RocketMQ into PolarDB
// through Temporal. Configuration comes from the environment (see README);
// `worker -dev` instead starts a complete local stack in-process and runs
// the same worker against it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/syncbridge/syncbridge/internal/config"
	"github.com/syncbridge/syncbridge/internal/workerapp"
)

func main() {
	var dev devFlags
	flag.BoolVar(&dev.enabled, "dev", false, "start an embedded local stack (Temporal + Web UI, RocketMQ emulator, database) and run against it")
	dev.register(flag.CommandLine)
	flag.CommandLine.Usage = func() { usage(flag.CommandLine.Output(), flag.CommandLine) }
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	var err error
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
