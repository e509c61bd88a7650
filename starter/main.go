// Command starter is the operator's tool for a syncbridge worker fleet:
// it triggers reconciliation after an incident, inspects and fixes what is
// stuck (quarantined messages, conflicts, single keys), controls the poller
// workflows and publishes demo/load events. It reads the same environment
// as the worker (internal/config) and talks to Temporal, the database and
// the broker only through the project's packages.
//
// Exit status: 0 success, 1 operational failure, 2 usage error.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// commandTree is every command, built afresh for each run: setup
// registers flags into variables of that run only.
func commandTree() *command {
	return &command{
		about: `Operator tool for the syncbridge worker fleet. Configuration comes from the
same environment variables as the worker (ROCKETMQ_*, ALIBABA_*, POLARDB_*,
TEMPORAL_*, SYNCBRIDGE_*).`,
		actions: []*command{
			statusCommand(),
			reconcileCommand(),
			quarantineCommand(),
			conflictsCommand(),
			inspectCommand(),
			pollersCommand(),
			deployCommand(),
			publishCommand(),
			codecServerCommand(),
		},
	}
}
