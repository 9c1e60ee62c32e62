"""The students' side of a burst: the CPU one student's fetch and submit (1 MiB each) cost the
process running nbgrader's exchange classes, with the plugin against the service and with
nbgrader's default exchange, one student at a time, alternating, in one run.

In the burst (``bench/transfers.py``) the students' nbgrader and the service share the two
cores, so the client's CPU lengthens the burst and its p99 as much as the server's. Each
student is ``bench.exchange_classes._burst_student`` (fetch, write 1 MiB of their own, submit)
in this one process, as the Assignments tab runs the classes inside the long-lived Jupyter
server: page faults count, because on a virtual machine that hands freed memory back to its
host a fresh page costs microseconds. Also printed: the plugin's stages (the download with
its unpacking, the upload with its packing, the copy kept in nbgrader's cache).

    .venv/bin/python bench/client_cpu.py                 # 100 students per round, 2 rounds
    .venv/bin/python bench/client_cpu.py --students 200 --rounds 3
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import exchange_classes
from common import BIN, MiB, Server

from nbgrader_plugin import client, fetch_assignment, submit

WARM_UP = 20  # students run before measuring (imports, first connections, the heap)
STAGES = (
    (fetch_assignment.ExchangeFetchAssignment, "_download", "plugin: download and unpack"),
    (client.ExchangeClient, "upload", "plugin: pack and upload"),
    (submit.ExchangeSubmit, "_cache_copy", "plugin: copy into nbgrader's cache"),
)


def thread_usage() -> tuple[float, int]:
    """This thread's CPU seconds and minor page faults so far."""
    return time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


@contextmanager
def stages_timed(into: Counter[str], faults: Counter[str]) -> Iterator[None]:
    """Time the plugin's ``STAGES`` (CPU and page faults of the calling thread) meanwhile."""
    originals = [(owner, name, getattr(owner, name)) for owner, name, _label in STAGES]
    for owner, name, label in STAGES:
        setattr(owner, name, _timed(getattr(owner, name), label, into, faults))
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def _timed(
    func: Callable[..., Any], label: str, into: Counter[str], faults: Counter[str]
) -> Callable[..., Any]:
    @functools.wraps(func)
    def timed(*args: Any, **kwargs: Any) -> Any:
        cpu, flt = thread_usage()
        try:
            return func(*args, **kwargs)
        finally:
            cpu_after, flt_after = thread_usage()
            into[label] += cpu_after - cpu
            faults[label] += flt_after - flt

    return timed


def one_round(side: exchange_classes.Side, work: Path, course: str, students: int) -> list[str]:
    """``students`` students of ``side`` measured after ``WARM_UP`` more; the printed lines."""
    run = exchange_classes.prepare_burst(side, work, course, WARM_UP + students, os.urandom(MiB))
    exchange_classes._BURST = (run, work)  # noqa: SLF001 - the burst's own student function
    for name in run.students[:WARM_UP]:
        exchange_classes._burst_student(name)  # noqa: SLF001
    cpu: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    before = thread_usage()
    with stages_timed(cpu, faults) if not side.is_floor else _nothing():
        for name in run.students[WARM_UP:]:
            exchange_classes._burst_student(name)  # noqa: SLF001
    after = thread_usage()
    exchange_classes._BURST = None  # noqa: SLF001
    lines = [
        f"{side.name:<40} {1000 * (after[0] - before[0]) / students:8.2f} "
        f"{(after[1] - before[1]) / students:8.0f}"
    ]
    for _owner, _name, label in STAGES if not side.is_floor else ():
        lines.append(
            f"  {label:<38} {1000 * cpu[label] / students:8.2f} {faults[label] / students:8.0f}"
        )
    return lines


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=100, help="students measured per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both exchanges")
    parser.add_argument("--tmp-dir", default=None, help="where the data goes (a real disk)")
    args = parser.parse_args()
    # nbgrader's Gradebook runs the `alembic` command: the venv's, as under an activated venv
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    with tempfile.TemporaryDirectory(prefix="client-cpu-", dir=args.tmp_dir) as tmp:
        work = Path(tmp)
        (work / "service").mkdir()
        server = Server.start(f"sqlite:///{work}/service/db.sqlite", work / "service", 1)
        try:
            print(
                f"Client CPU per student (fetch + write 1 MiB + submit, one at a time), "
                f"{args.students} students per round after {WARM_UP} to warm up"
            )
            print(f"{'':<40} {'CPU ms':>8} {'faults':>8}")
            for index in range(args.rounds):
                for side in (
                    exchange_classes.service_side(server),
                    exchange_classes.floor_side(work / f"exchange-{index}"),
                ):
                    course = f"c{index}-{'floor' if side.is_floor else 'plugin'}"
                    folder = work / course
                    for line in one_round(side, folder, course, args.students):
                        print(line, flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
