#!/usr/bin/env bash
# Install everything and run the whole test suite on SQLite, PostgreSQL and MariaDB.
# Usage: scripts/test.sh [pytest args...]
# Env: LTI_EXCHANGE_TEST_BACKENDS (default sqlite,postgresql,mariadb), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

export LTI_EXCHANGE_TEST_BACKENDS="${LTI_EXCHANGE_TEST_BACKENDS:-sqlite,postgresql,mariadb}"
scripts/start-databases.sh "$LTI_EXCHANGE_TEST_BACKENDS"

echo "== lint"
.venv/bin/ruff check lti_exchange nbgrader_plugin tests bench config
.venv/bin/hadolint Dockerfile

echo "== tests on: $LTI_EXCHANGE_TEST_BACKENDS"
exec .venv/bin/pytest -p no:cacheprovider "$@"
