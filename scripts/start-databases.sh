#!/usr/bin/env bash
# Make sure the database servers the tests need are installed and running (idempotent).
# Usage: scripts/start-databases.sh "sqlite,postgresql,mariadb"
set -euo pipefail
backends="${1:-sqlite,postgresql,mariadb}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

wait_for() {  # wait_for NAME COMMAND...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "$name did not become ready within 60 s" >&2
  return 1
}

pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q; }
maria_ready() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -uroot status; }

if [[ "$backends" == *postgresql* ]]; then
  if ! command -v pg_isready >/dev/null 2>&1; then
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
  fi
  if ! pg_ready; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  wait_for PostgreSQL pg_ready
  # Trust auth for the loopback test user (what the tests connect as).
  if ! psql -h 127.0.0.1 -U postgres -c 'select 1' >/dev/null 2>&1; then
    echo "PostgreSQL is running but postgres@127.0.0.1 cannot connect without a password;" \
         "set LTI_EXCHANGE_TEST_PG to a URL with credentials." >&2
  fi
  echo "PostgreSQL ready"
fi

if [[ "$backends" == *mariadb* ]]; then
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server
  fi
  if ! maria_ready; then
    as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  fi
  wait_for MariaDB maria_ready
  echo "MariaDB ready"
fi
