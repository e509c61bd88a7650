#!/usr/bin/env bash
# Production rehearsal: syncbridge as production runs it, on this machine.
#
#   scripts/rehearsal.sh up [--workers N] [--flood] [--short-drainage] [--dir DIR]
#   scripts/rehearsal.sh status [--dir DIR]
#   scripts/rehearsal.sh drill [--messages N] [--faults LIST] [--dir DIR]
#   scripts/rehearsal.sh bench [--messages N] [--drain-messages N] [--flood-messages N]
#        [--exceptions LIST] [--flood-rounds N] [--parts fleet,cluster,dev] [--dir DIR]
#        (after up --workers 3)
#   scripts/rehearsal.sh down [--dir DIR]
#
# up builds (into DIR/bin) the official Temporal server, its SQL tool and
# the Web UI server from the modules go.mod pins, and syncbridge's worker,
# starter, emulator and the rehearsal tool (cmd/rehearsal); then starts
# Temporal on PostgreSQL 15 (127.0.0.1:5432), the UI, the codec server, the
# emulator, a proxy in front of MariaDB (127.0.0.1:3306) and N workers.
# DIR defaults to ./rehearsal. docs/rehearsal.md has the details and the
# figures.
set -euo pipefail
cd "$(dirname "$0")/.."

cmd=${1:-}
[ -n "$cmd" ] || { sed -n '2,12p' "$0" >&2; exit 2; }
shift
dir=rehearsal
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --dir) dir=${args[$((i + 1))]:-$dir} ;;
    --dir=*) dir=${args[$i]#--dir=} ;;
  esac
done
bin=$dir/bin
mkdir -p "$bin"

if [ "$cmd" = up ] || [ ! -x "$bin/rehearsal" ]; then
  # PostgreSQL and MariaDB must run; ensure-services starts them when it
  # can (the same script the tests use).
  REHEARSAL_SERVICES_ONLY=1 scripts/ensure-services.sh >&2
  echo "rehearsal: building binaries into $bin" >&2
  go build -o "$bin/temporal-server" go.temporal.io/server/cmd/server
  go build -o "$bin/temporal-sql-tool" go.temporal.io/server/cmd/tools/sql
  go build -o "$bin/temporal-ui-server" github.com/temporalio/ui-server/v2/cmd/server
  # -tags nodev: the production build, as the image ships it.
  go build -tags nodev -o "$bin/" ./worker ./starter ./cmd/mqemu
  go build -o "$bin/" ./cmd/rehearsal
fi
exec "$bin/rehearsal" "$cmd" --bin "$bin" --repo . "$@"
