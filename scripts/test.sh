#!/usr/bin/env bash
# Runs every test of the project: unit tests, integration tests against the
# embedded Temporal server, the RocketMQ emulator and MariaDB, the dev-stack
# restart test and the headless-Chromium Web UI check.
#
# Needs MariaDB on 127.0.0.1:3306 (root, empty password) and Debian's
# chromium; scripts/ensure-services.sh installs and starts them when it can
# (it is run first). SYNCBRIDGE_TEST_MYSQL_DSN points the tests at another
# server.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-services.sh

# The Web UI check must run, not skip, when this script runs.
export UI_CHECK_REQUIRED=1
export UI_CHECK_SCREENSHOT=${UI_CHECK_SCREENSHOT:-$PWD/ui-check-workflows.png}

echo "== production build leaves the dev stack out (-tags nodev)"
if go list -deps -tags nodev ./worker | grep -qE '^(go.temporal.io/server|github.com/temporalio/ui-server|github.com/dolthub)'; then
  echo "FAIL: the nodev worker build still links the embedded Temporal server, Web UI or database" >&2
  exit 1
fi
echo "ok: worker -tags nodev links no embedded server"

echo "== go vet"
go vet ./...
echo "== go test (race detector on)"
go test -race -count=1 -timeout 40m ./...
