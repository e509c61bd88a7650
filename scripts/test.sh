#!/usr/bin/env bash
# Runs every test of the project: unit tests, integration tests against the
# embedded Temporal server, the RocketMQ emulator and MariaDB, the dev-stack
# restart test, the headless-Chromium Web UI check, the alert-rule tests
# (promtool), the live-Prometheus scrape test and a short production
# rehearsal drill (scripts/rehearsal.sh: a Temporal cluster on PostgreSQL,
# two worker processes, one SIGKILLed, the Temporal server SIGKILLed and
# restarted, 2,000 messages; then the worker-versioning tests against that
# cluster).
#
#   scripts/test.sh           everything (what CI runs)
#   scripts/test.sh -short    unit tests only (SHORT=1 does the same): no
#                             embedded Temporal server, no worker binary,
#                             no race detector
#
# Needs MariaDB on 127.0.0.1:3306 (root, empty password), PostgreSQL 15 on
# 127.0.0.1:5432 (trust authentication), Debian's chromium
# and prometheus; scripts/ensure-services.sh installs and starts them when
# it can (it is run first). SYNCBRIDGE_TEST_MYSQL_DSN points the tests at
# another server.
#
# Output: go test -json through scripts/testfmt, which prints slow tests as
# they finish, every failure in full, a "... running:" line every minute
# naming the packages still running, and go test's own "ok"/"FAIL" line per
# package.
set -euo pipefail
cd "$(dirname "$0")/.."

short=${SHORT:-}
for arg in "$@"; do
  case "$arg" in
    -short|--short) short=1 ;;
    *) echo "usage: scripts/test.sh [-short]" >&2; exit 2 ;;
  esac
done

scripts/ensure-services.sh

# The Web UI check, the rule tests, the live-Prometheus test and the
# systemd unit's systemd-analyze checks must run, not skip, when this
# script runs.
export UI_CHECK_REQUIRED=1
export PROMETHEUS_REQUIRED=1
export SYSTEMD_ANALYZE_REQUIRED=1
export UI_CHECK_SCREENSHOT=${UI_CHECK_SCREENSHOT:-$PWD/ui-check-workflows.png}

echo "== production build leaves the dev stack out (-tags nodev)"
if go list -deps -tags nodev ./worker | grep -qE '^(go.temporal.io/server|github.com/temporalio/ui-server|github.com/dolthub)'; then
  echo "FAIL: the nodev worker build still links the embedded Temporal server, Web UI or database" >&2
  exit 1
fi
echo "ok: worker -tags nodev links no embedded server"

echo "== go vet"
go vet ./...

# Built once, so a broken formatter fails here rather than hiding results.
testfmt=$(mktemp -d)/testfmt
trap 'rm -rf "$(dirname "$testfmt")"' EXIT
go build -o "$testfmt" ./scripts/testfmt

if [ -n "$short" ]; then
  # Without -race: the race build of the embedded Temporal server alone
  # takes longer than the whole short run; the full run keeps -race.
  echo "== go test -short (unit tests)"
  go test -json -short -count=1 -timeout 15m ./... | "$testfmt"
else
  echo "== go test (race detector on)"
  # The race detector instruments every package but modernc.org/...: the
  # embedded Temporal server's SQLite, C translated to Go, which only the
  # test server runs. Instrumented (and pointer-checked), its statement
  # parser took 40% of the CPU of a drain test, the server fell seconds
  # behind on every write, and pollers lost their heartbeats; a drain test
  # took 97 s instead of 23 s.
  go test -json -race -gcflags='modernc.org/...=-race=false -d=checkptr=0' \
    -count=1 -timeout 40m ./... | "$testfmt"

  # The short drill: the real topology (the official server on PostgreSQL,
  # worker processes in production mode), a worker SIGKILL and a Temporal
  # server SIGKILL + restart while 2,000 messages drain; fails on any loss,
  # doubling or dead letter. Its processes are stopped whatever happens.
  echo "== production rehearsal: short drill"
  rehearsal_dir=$(mktemp -d)
  trap 'scripts/rehearsal.sh down --dir "$rehearsal_dir" >/dev/null 2>&1 || true; rm -rf "$(dirname "$testfmt")" "$rehearsal_dir"' EXIT
  # --short-drainage: the versioning tests below wait for builds to drain.
  scripts/rehearsal.sh up --workers 2 --short-drainage --dir "$rehearsal_dir" | grep -v '^  export '
  if ! scripts/rehearsal.sh drill --dir "$rehearsal_dir" --messages 2000 --faults kill-worker,kill-temporal --timeout 12m; then
    echo "FAIL: the production rehearsal's short drill; process logs follow" >&2
    tail -n 40 "$rehearsal_dir"/logs/*.log >&2 || true
    exit 1
  fi
  # Worker Deployment Versioning on the same cluster (issue 21): the
  # mid-drain upgrade and rollback and the starter's deploy commands, each
  # on its own task queue and deployment, so the drill's fleet is not in
  # the way. Without -race: the server packages are already built that way
  # by up (about 1 min 10 s with a warm cache).
  echo "== production rehearsal: worker versioning on the cluster"
  if ! SYNCBRIDGE_TEST_TEMPORAL_ADDRESS=127.0.0.1:17233 SYNCBRIDGE_TEST_TEMPORAL_NAMESPACE=syncbridge \
    go test -json -count=1 -p 1 -timeout 10m -run '^(TestUpgradeAndRollbackMidDrain|TestDeployCommands)$' \
    ./internal/workerapp ./starter | "$testfmt"; then
    echo "FAIL: worker versioning on the rehearsal cluster; Temporal's log follows" >&2
    tail -n 40 "$rehearsal_dir"/logs/temporal.log >&2 || true
    exit 1
  fi
  scripts/rehearsal.sh down --dir "$rehearsal_dir"
fi
