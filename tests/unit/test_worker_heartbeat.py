"""The gunicorn worker's heartbeat (``HeadBufferingWorker.notify``): gthread calls it on every
turn of its event loop; the worker touches its heartbeat file at most once a second (and well
within the arbiter's timeout), so the arbiter still sees it alive."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from gunicorn.config import Config
from gunicorn.workers.workertmp import WorkerTmp

from lti_exchange.serving.head_buffering import HeadBufferingWorker


def worker_with_heartbeat(timeout: float) -> HeadBufferingWorker:
    worker = HeadBufferingWorker.__new__(HeadBufferingWorker)  # no sockets, no app
    worker.tmp = WorkerTmp(Config())
    worker.timeout = timeout  # gunicorn gives a worker half the configured timeout
    return worker


def test_many_loop_turns_touch_the_heartbeat_file_once():
    worker = worker_with_heartbeat(timeout=15)
    try:
        worker.notify()
        first = worker.tmp.last_update()
        time.sleep(0.02)
        for _ in range(200):
            worker.notify()
        assert worker.tmp.last_update() == first
        worker._notified -= 1.0  # a second later
        worker.notify()
        assert worker.tmp.last_update() > first
    finally:
        worker.tmp.close()


def test_a_short_timeout_gets_heartbeats_well_within_it():
    worker = worker_with_heartbeat(timeout=0.4)  # heartbeats every 0.1 s at most
    try:
        worker.notify()
        first = worker.tmp.last_update()
        time.sleep(0.15)
        worker.notify()
        assert worker.tmp.last_update() > first
    finally:
        worker.tmp.close()


def test_both_ways_of_serving_keep_the_heartbeat_file_in_memory_where_they_can(tmp_path):
    from lti_exchange.serving.gunicorn_app import FRONT_DOOR

    in_memory = Path("/dev/shm").is_dir()
    assert (FRONT_DOOR.get("worker_tmp_dir") == "/dev/shm") is in_memory  # lti-exchange serve
    # gunicorn -c config/gunicorn.conf.py: read in its own process (it configures logging and
    # prepares the metrics folder as it is read)
    read = subprocess.run(
        [sys.executable, "-c", READ_CONF, str(ROOT / "config" / "gunicorn.conf.py")],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert (read.stdout.strip() == "/dev/shm") is in_memory


READ_CONF = "import runpy, sys; print(runpy.run_path(sys.argv[1]).get('worker_tmp_dir'))"
ROOT = Path(__file__).resolve().parents[2]
