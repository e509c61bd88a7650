//go:build nodev

package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
)

// Production images are built with -tags nodev: the dev stack (embedded
// Temporal server, Web UI, emulator, in-memory database) is left out.
type devFlags struct{ enabled bool }

func (d *devFlags) register(*flag.FlagSet) {}

func runDev(context.Context, devFlags, *slog.Logger, *slog.LevelVar) error {
	return errors.New("this binary was built with -tags nodev and has no -dev mode")
}
