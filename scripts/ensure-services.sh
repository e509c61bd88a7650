#!/usr/bin/env bash
# Makes sure what the tests need is on this machine and running:
# MariaDB on 127.0.0.1:3306 (root, empty password), PostgreSQL 15 on
# 127.0.0.1:5432 (trust authentication; the production rehearsal's Temporal
# cluster), Debian's Chromium for
# the Web UI check, docker-compose to validate docker-compose.yml (no
# Docker engine is needed for that), Prometheus (server and promtool) for
# the alert-rule tests and the live-Prometheus test, and systemd-analyze
# for the systemd unit's tests (Debian's systemd package; nothing is
# started). Idempotent; needs root (or sudo) only to install/start.
# REHEARSAL_SERVICES_ONLY=1 stops after the two databases
# (scripts/rehearsal.sh needs nothing else).
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

mariadb_up() { mariadb -h127.0.0.1 -P3306 -uroot -e 'SELECT 1' >/dev/null 2>&1; }

if ! mariadb_up; then
  if [ ! -x /usr/sbin/mariadbd ]; then
    echo "ensure-services: installing MariaDB"
    apt_install mariadb-server
  fi
  echo "ensure-services: starting MariaDB"
  as_root mkdir -p /run/mysqld
  as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  for _ in $(seq 1 60); do mariadb_up && break; sleep 1; done
  if ! mariadb_up; then
    # A fresh install may allow root only over the unix socket.
    as_root mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;" 2>/dev/null || true
  fi
  mariadb_up || { echo "ensure-services: MariaDB is not reachable on 127.0.0.1:3306 as root" >&2; exit 1; }
fi
echo "ensure-services: MariaDB ok ($(mariadb -h127.0.0.1 -uroot -N -e 'SELECT VERSION()'))"

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ! postgres_up; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /etc/postgresql/15/main ]; then
    echo "ensure-services: installing PostgreSQL 15"
    apt_install postgresql-15
  fi
  echo "ensure-services: starting PostgreSQL 15"
  as_root pg_ctlcluster --skip-systemctl-redirect 15 main start || true
  for _ in $(seq 1 60); do postgres_up && break; sleep 1; done
  postgres_up || { echo "ensure-services: PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
  echo "ensure-services: PostgreSQL on 127.0.0.1:5432 does not let postgres in without a password (the rehearsal needs trust authentication on loopback)" >&2
  exit 1
fi
echo "ensure-services: PostgreSQL ok ($(psql -h 127.0.0.1 -U postgres -d postgres -Atc 'SHOW server_version'))"

if [ -n "${REHEARSAL_SERVICES_ONLY:-}" ]; then
  exit 0
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "ensure-services: installing Chromium (for the Web UI check)"
  apt_install chromium || echo "ensure-services: Chromium could not be installed; the UI check will say so" >&2
fi

if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
  echo "ensure-services: installing docker-compose (to validate docker-compose.yml)"
  apt_install docker-compose || echo "ensure-services: docker-compose could not be installed; the compose check will say so" >&2
fi

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "ensure-services: installing systemd (systemd-analyze, for the systemd unit's tests)"
  # Only the tool is used: the tests verify deploy/systemd's unit, no
  # service is started and PID 1 stays what it is.
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends systemd >/dev/null \
    || { echo "ensure-services: systemd could not be installed" >&2; exit 1; }
fi

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "ensure-services: installing Prometheus (alert-rule and live-scrape tests)"
  # --no-install-recommends: the server and promtool only, not the exporters.
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
    || { echo "ensure-services: Prometheus could not be installed" >&2; exit 1; }
  # The package may start its own server on :9090 where an init system runs;
  # the tests start their own on free ports and need none.
  as_root service prometheus stop >/dev/null 2>&1 || true
fi
