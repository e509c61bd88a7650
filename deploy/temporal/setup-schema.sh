#!/bin/sh
# One-shot: create or upgrade Temporal's two PostgreSQL databases
# (persistence and SQL advanced visibility) with temporal-sql-tool and the
# schema files of the same server version. Every step is idempotent, so it
# runs on each start. Two callers, one script:
#   docker-compose.yml        temporal-schema, in temporalio/admin-tools
#   scripts/rehearsal.sh up   the tool built from the pinned module, its
#                             schema directory from the module cache
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS is required}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${SQL_PASSWORD=}" # read by temporal-sql-tool; empty with trust authentication
export SQL_PASSWORD
PORT="${DB_PORT:-5432}"
SCHEMA_DIR="${SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}"
TEMPORAL_DB="${TEMPORAL_DB:-temporal}"
VISIBILITY_DB="${VISIBILITY_DB:-temporal_visibility}"

sqltool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$PORT" -u "$POSTGRES_USER" "$@"
}

for pair in "$TEMPORAL_DB:temporal" "$VISIBILITY_DB:visibility"; do
  db="${pair%%:*}"
  dir="${pair##*:}"
  echo "setup-schema: database $db"
  # PostgreSQL has no CREATE DATABASE IF NOT EXISTS: on a later start this
  # fails because the database exists; a real connection failure fails the
  # next step.
  sqltool --db "$db" create || echo "setup-schema: $db not created (exists?)"
  sqltool --db "$db" setup-schema -v 0.0
  sqltool --db "$db" update-schema -d "$SCHEMA_DIR/$dir/versioned"
done
echo "setup-schema: done"
