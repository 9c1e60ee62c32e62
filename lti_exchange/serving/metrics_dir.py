"""The directory prometheus-client's multiprocess mode keeps its files in (no Flask, and no
``prometheus_client`` import here: the master must set the directory before any worker imports
it, or the workers would count in private memory)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
_CREATED = "LTI_EXCHANGE_METRICS_DIR_CREATED"


def prepare_multiprocess_dir() -> str:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory and return it.

    An operator's directory (the variable already set) is emptied of the previous run's
    ``*.db`` files; otherwise a fresh temporary directory is created (removed by
    :func:`remove_multiprocess_dir` at exit). Call in the master before workers start.
    """
    given = os.environ.get(ENV, "").strip()
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        return str(path)
    created = tempfile.mkdtemp(prefix="lti-exchange-metrics-")
    os.environ[ENV] = created
    os.environ[_CREATED] = created
    return created


def remove_multiprocess_dir() -> None:
    """Remove the directory :func:`prepare_multiprocess_dir` created (never an operator's)."""
    created = os.environ.get(_CREATED)
    if created and created == os.environ.get(ENV):
        shutil.rmtree(created, ignore_errors=True)


def mark_worker_dead(pid: int) -> None:
    """gunicorn's ``child_exit``: fold a dead worker's live gauges out of the totals."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
