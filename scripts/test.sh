#!/usr/bin/env bash
# Install everything and run the whole test suite: the tests marked all_backends on SQLite,
# PostgreSQL and MariaDB, every other test on the main backend (see tests/conftest.py).
# Usage: scripts/test.sh [pytest args...]
# Env: LTI_EXCHANGE_TEST_BACKENDS (default sqlite,postgresql,mariadb),
#      LTI_EXCHANGE_TEST_MAIN_BACKEND (default postgresql: where the tests not marked all_backends
#      run), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
phase_start=$SECONDS
phases=()
phase_done() {  # phase_done NAME: record how long the phase since the last call took
  phases+=("$1 $((SECONDS - phase_start)) s")
  phase_start=$SECONDS
}
report_phases() {
  local status=$?
  phase_done tests
  echo "== phases: ${phases[*]} (total $((SECONDS - started)) s)"
  exit "$status"
}

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
# The browser tests (tests/browser) drive Debian's chromium with Playwright; no browser download.
if [ ! -x /usr/bin/chromium ]; then
  sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
phase_done install

export LTI_EXCHANGE_TEST_BACKENDS="${LTI_EXCHANGE_TEST_BACKENDS:-sqlite,postgresql,mariadb}"
if [[ "$LTI_EXCHANGE_TEST_BACKENDS" == *postgresql* ]]; then
  export LTI_EXCHANGE_TEST_MAIN_BACKEND="${LTI_EXCHANGE_TEST_MAIN_BACKEND:-postgresql}"
fi
scripts/start-databases.sh "$LTI_EXCHANGE_TEST_BACKENDS"
phase_done databases

echo "== lint"
.venv/bin/ruff check lti_exchange nbgrader_plugin tests bench config
.venv/bin/ruff format --check lti_exchange nbgrader_plugin tests bench config
.venv/bin/mypy  # lti_exchange and nbgrader_plugin, configured in pyproject.toml
.venv/bin/hadolint Dockerfile
phase_done lint

echo "== tests on: $LTI_EXCHANGE_TEST_BACKENDS"
trap report_phases EXIT
.venv/bin/pytest -p no:cacheprovider "$@"
