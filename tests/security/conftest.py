"""Fixtures for the attack tests: a live server whose processes have a memory ceiling.

``guarded_server`` runs gunicorn (2 workers) with ``RLIMIT_AS`` set, so an attack that makes a
worker allocate without bound fails the test (a MemoryError / killed worker) instead of swapping
the machine; ``peak_rss_mb()`` reads each worker's high-water mark (VmHWM) from ``/proc``.
"""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from tests.conftest import LiveServer, start_server, stop_server

MEMORY_LIMIT = 1536 * 1024 * 1024  # address space per process (threads and arenas included)


def limit_memory() -> None:
    """Cap this process's address space (a ``preexec_fn`` for the server under attack)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def worker_pids(server: LiveServer) -> list[int]:
    """The gunicorn workers: the master's children."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    return [int(pid) for pid in children.read_text().split()]


def peak_rss_mb(server: LiveServer) -> float:
    """The largest peak resident size (VmHWM) of any worker, in MB."""
    peaks = []
    for pid in worker_pids(server):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks, default=0.0)


@pytest.fixture(scope="session")
def guarded_server(database_url, tmp_path_factory):
    server = start_server(
        database_url,
        tmp_path_factory.mktemp("guarded"),
        extra_env={"MALLOC_ARENA_MAX": "2"},
        preexec_fn=limit_memory,
    )
    yield server
    stop_server(server)
