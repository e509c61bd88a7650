// Package devstack runs, inside one process and on loopback only, everything
// the pipeline talks to, so a fresh machine with no cloud account, database
// or Temporal cluster can run it end to end, and integration tests get the
// same real parts:
//
//	part                         default address         override
//	Temporal frontend (gRPC)     127.0.0.1:7233          TemporalOptions.FrontendAddr
//	Temporal Web UI              http://127.0.0.1:8233   TemporalOptions.UIAddr ("" = none)
//	RocketMQ HTTP emulator       http://127.0.0.1:9876   Options.MQAddr
//	MySQL-compatible database    127.0.0.1:3307          Options.DBAddr, or Options.DSN for a real one
//
// Port 0 anywhere picks a free port. The Temporal server is the real one
// (go.temporal.io/server) with SQLite persistence, in memory unless
// TemporalOptions.DBPath names a file; the Web UI is Temporal's own
// (ui-server with its embedded assets); the database is go-mysql-server's
// in-memory engine; the emulator is package mqemu.
//
// The package pulls the whole Temporal server and UI into any binary that
// imports it, so only the build-tagged dev wiring of the worker and tests
// may import it.
package devstack
