"""Worker CPU pinning in the real server (``LTI_EXCHANGE_PIN_WORKERS``): gunicorn as configured
by ``config/gunicorn.conf.py``, its workers' CPU affinity read from ``/proc``."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import requests

from tests.conftest import start_server, stop_server


def workers_of(master: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def allowed_cpus(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def wait_for_workers(master: int, count: int, without: int | None = None) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = workers_of(master)
        if len(workers) == count and without not in workers:
            return workers
        time.sleep(0.1)
    raise AssertionError(f"gunicorn did not reach {count} workers: {workers_of(master)}")


def test_one_worker_per_cpu_each_on_its_own_cpu_and_a_replacement_takes_the_freed_one(
    database_url, tmp_path
):
    cpus = sorted(os.sched_getaffinity(0))
    server = start_server(
        database_url, tmp_path, {"LTI_EXCHANGE_PIN_WORKERS": "auto"}, workers=len(cpus)
    )
    try:
        master = server.process.pid
        workers = wait_for_workers(master, len(cpus))
        pinned = {pid: allowed_cpus(pid) for pid in workers}
        if len(cpus) > 1:
            assert sorted(pinned.values()) == sorted(str(cpu) for cpu in cpus), pinned
        else:  # one CPU: nothing to choose, nothing changed
            assert list(pinned.values()) == [allowed_cpus(master)]
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200

        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for_workers(master, len(cpus), without=victim)
        newcomer = next(pid for pid in replaced if pid not in workers)
        assert allowed_cpus(newcomer) == pinned[victim]
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        stop_server(server)


def test_workers_are_not_pinned_by_default(live_server):
    master = live_server.process.pid
    assert all(allowed_cpus(pid) == allowed_cpus(master) for pid in workers_of(master))
