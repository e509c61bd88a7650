#!/bin/sh
# One-shot: create or upgrade Temporal's two MySQL databases (persistence
# and visibility). Runs in temporalio/admin-tools, whose temporal-sql-tool
# and schema files match the server image of the same tag. Every step is
# idempotent, so it runs on each `docker compose up`.
set -eu

: "${MYSQL_SEEDS:?MYSQL_SEEDS is required}"
: "${MYSQL_USER:?MYSQL_USER is required}"
: "${SQL_PASSWORD:?SQL_PASSWORD is required}" # read by temporal-sql-tool
PORT="${DB_PORT:-3306}"
SCHEMA_DIR=/etc/temporal/schema/mysql/v8

sqltool() {
  temporal-sql-tool --plugin mysql8 --ep "$MYSQL_SEEDS" -p "$PORT" -u "$MYSQL_USER" "$@"
}

for pair in temporal:temporal temporal_visibility:visibility; do
  db="${pair%%:*}"
  dir="${pair##*:}"
  echo "setup-schema: database $db"
  sqltool --db "$db" create
  sqltool --db "$db" setup-schema -v 0.0
  sqltool --db "$db" update-schema -d "$SCHEMA_DIR/$dir/versioned"
done
echo "setup-schema: done"
