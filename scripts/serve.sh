#!/usr/bin/env bash
# Install lti-exchange into .venv and run it on its embedded default (SQLite + local storage
# under ./lti-exchange-data). Usage: scripts/serve.sh [--host H] [--port P]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
exec .venv/bin/lti-exchange serve "$@"
