#!/usr/bin/env bash
# Run lti-exchange on its embedded default (SQLite + local storage + keys under
# $LTI_EXCHANGE_DATA_DIR, default ./lti-exchange-data in this clone).
# Usage: scripts/serve.sh [--host H] [--port P]
# The first start creates .venv and installs the package into it (quietly; the pip log goes to
# .venv/install.log); later starts install again only when pyproject.toml has changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
STAMP=.venv/.lti-exchange-installed
if [ ! -x .venv/bin/lti-exchange ] || { [ -e "$STAMP" ] && [ pyproject.toml -nt "$STAMP" ]; }; then
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    echo "Installing lti-exchange into .venv (about a minute; log in .venv/install.log)..." >&2
    if ! { .venv/bin/python -m pip install --upgrade pip \
        && .venv/bin/python -m pip install -e .; } >.venv/install.log 2>&1; then
        tail -n 30 .venv/install.log >&2
        echo "Installing failed; the whole log is in .venv/install.log." >&2
        exit 1
    fi
    # Editable installs skip the file that enables the Jupyter server extension: write it.
    .venv/bin/lti-exchange handoff enable >/dev/null
    touch "$STAMP"
fi
exec .venv/bin/lti-exchange serve "$@"
