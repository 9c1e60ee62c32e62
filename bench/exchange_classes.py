"""nbgrader's exchange classes driven in-process, side by side: nbgrader's default exchange (a
shared directory on the same host: the floor) and the plugin's classes against the service.

Each student, and the instructor, has their own ``CourseDirectory`` root; the plugin's classes
read each user's token from their own token store (``c.Exchange.token_file``). Only public
classes are used: ``nbgrader.exchange.default.*``, ``nbgrader_plugin.*`` and the plugin's token
store."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import resource
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbgrader.exchange.default as default_exchange
from common import THREADS, MiB, Server, path
from nbgrader.api import Gradebook
from nbgrader.auth import Authenticator
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config

import nbgrader_plugin
from nbgrader_plugin.tokens import TokenEntry, TokenStore

NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n'
LOG = logging.getLogger("bench.exchange")
LOG.propagate = False
LOG.setLevel(logging.ERROR)
LOG.addHandler(logging.StreamHandler())


@dataclass
class Side:
    """One exchange: its classes and the ``c.Exchange.*`` settings every user shares."""

    name: str
    module: Any
    settings: dict[str, Any]
    server: Server | None = None  # the service, for the plugin's side (it mints the tokens)
    blob_folder: Path | None = None  # the floor app's side: its submissions are these files

    @property
    def is_floor(self) -> bool:
        return self.server is None

    def run(
        self,
        class_name: str,
        root: Path,
        course: str,
        assignment: str = "",
        student: str = "",
        **traits: Any,
    ) -> Any:
        """Run one exchange class as the user whose course directory is ``root``."""
        config = Config()
        config.CourseDirectory.root = str(root)
        config.CourseDirectory.course_id = course
        config.CourseDirectory.assignment_id = assignment
        # nbgrader's defaults (100 MB) would refuse or drop the big transfer's file
        config.CourseDirectory.max_dir_size = config.CourseDirectory.max_file_size = 1 << 30
        if student:
            config.CourseDirectory.student_id = student
        for name, value in self.settings.items():
            setattr(config.Exchange, name, value)
        config.Exchange.assignment_dir = str(root)
        config.Exchange.cache = str(root / ".nbgrader-cache")
        if not self.is_floor:
            config.Exchange.token_file = str(root / ".tokens.json")
        coursedir = CourseDirectory(config=config)
        exchange = getattr(self.module, class_name)(
            coursedir=coursedir,
            authenticator=Authenticator(config=config),
            config=config,
            log=LOG,
            **traits,
        )
        return exchange.start()

    def gradebook(self, root: Path, course: str) -> None:
        """Create the user's nbgrader gradebook now, so that its one-off creation (nbgrader runs
        the ``alembic`` command for it) is not timed as part of a collect."""
        config = Config()
        config.CourseDirectory.root = str(root)
        with Gradebook(CourseDirectory(config=config).db_url, course):
            pass

    def user(self, root: Path, username: str, course: str, role: str = "Learner") -> Path:
        """Make ``root`` a user's home: for the service, a token store with their token."""
        root.mkdir(parents=True, exist_ok=True)
        if self.server is not None:
            token = self.server.token(username, course, role)
            entry = TokenEntry.from_access_token(token, self.settings["service_url"])
            TokenStore(root / ".tokens.json").save(entry)
        return root


def floor_side(root: Path) -> Side:
    root.mkdir(parents=True, exist_ok=True)
    return Side("default exchange", default_exchange, {"root": str(root)})


def service_side(server: Server) -> Side:
    settings = {"service_url": server.url, "progress_threshold": 1 << 62}
    return Side("lti-exchange", nbgrader_plugin, settings, server)


def floor_app_side(server: Server, url: str, blobs: Path) -> Side:
    """The plugin's classes against ``bench/floor_app.py`` at ``url`` (tokens from ``server``,
    which the floor app does not check; its submissions are the blobs under ``blobs``)."""
    settings = {"service_url": url, "progress_threshold": 1 << 62}
    return Side("plugin + floor app", nbgrader_plugin, settings, server, blobs)


def write_release(instructor: Path, assignment: str, data: Path | bytes) -> None:
    """``release/<assignment>/`` with a notebook and ``data.bin`` (``data``: bytes, or a file to
    hard-link so that a big file is not written twice)."""
    folder = instructor / "release" / assignment
    folder.mkdir(parents=True)
    (folder / f"{assignment}.ipynb").write_bytes(NOTEBOOK)
    if isinstance(data, Path):
        os.link(data, folder / "data.bin")
    else:
        (folder / "data.bin").write_bytes(data)


def sha256_of(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        while chunk := fh.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


# -- the deadline burst -------------------------------------------------------------------------
@dataclass
class BurstRun:
    """One side's burst: every student fetches the release, then submits 1 MiB of their own."""

    side: Side
    course: str
    instructor: Path
    students: list[str]
    wall: float = 0.0
    client_cpu: float = 0.0  # CPU of this process (every student thread) during the burst
    fetch: list[float] = field(default_factory=list)
    submit: list[float] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)
    stored: int = 0
    collect: float = 0.0
    collect_cpu: tuple[float, float] = (0.0, 0.0)  # this process's user and system CPU in it
    collected: int = 0


def prepare_burst(side: Side, work: Path, course: str, students: int, release: bytes) -> BurstRun:
    """Release the burst assignment and set up each student's home (tokens minted here)."""
    instructor = side.user(work / "instructor", "bench-instructor", course, "Instructor")
    write_release(instructor, "burst", release)
    side.gradebook(instructor, course)
    side.run("ExchangeReleaseAssignment", instructor, course, "burst")
    names = [f"student{i:04d}" for i in range(students)]
    for name in names:
        side.user(work / "students" / name, name, course)
    return BurstRun(side, course, instructor, names)


# The burst being run: set before the pool starts, so that a forked student process has it too.
_BURST: tuple[BurstRun, Path] | None = None


def _burst_student(name: str) -> tuple[str, float, float, str]:
    """One student of the burst: fetch, write 1 MiB of their own, submit."""
    assert _BURST is not None
    run, work = _BURST
    home = work / "students" / name
    start = time.perf_counter()
    run.side.run("ExchangeFetchAssignment", home, run.course, "burst", name)
    fetched = time.perf_counter()
    work_bytes = os.urandom(MiB)
    (home / "burst" / "data.bin").write_bytes(work_bytes)
    ready = time.perf_counter()
    run.side.run("ExchangeSubmit", home, run.course, "burst", name)
    done = time.perf_counter()
    return name, fetched - start, done - ready, hashlib.sha256(work_bytes).hexdigest()


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its children that have ended."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def run_burst(run: BurstRun, work: Path, clients: str = "threads") -> None:
    """Fetch then submit for every student, ``THREADS`` at a time; fills the timings.

    ``clients="threads"``: the students are threads of this process (one GIL, as the issue's
    numbers were taken); ``"processes"``: ``THREADS`` forked processes, as students' own
    machines would be (no GIL shared between them).
    """
    global _BURST
    _BURST = (run, work)
    pool: Executor = (
        ProcessPoolExecutor(THREADS, mp_context=multiprocessing.get_context("fork"))
        if clients == "processes"
        else ThreadPoolExecutor(THREADS)
    )
    start, cpu_start = time.perf_counter(), _cpu_with_children()
    with pool:
        results = list(pool.map(_burst_student, run.students))
    run.wall = time.perf_counter() - start
    run.client_cpu = _cpu_with_children() - cpu_start
    _BURST = None
    run.fetch = [r[1] for r in results]
    run.submit = [r[2] for r in results]
    run.digests = {r[0]: r[3] for r in results}
    run.stored = count_submissions(run.side, run.course, run.instructor, "burst")


def count_submissions(side: Side, course: str, instructor: Path, assignment: str) -> int:
    """Submissions the exchange holds for ``assignment`` (the inbound directory, or the
    instructor's API listing)."""
    if side.blob_folder is not None:
        return sum(len(files) for _, _, files in os.walk(side.blob_folder))
    if side.server is None:
        inbound = Path(side.settings["root"], course, "inbound")
        return sum(f"+{assignment}+" in entry.name for entry in inbound.iterdir())
    token = TokenStore(instructor / ".tokens.json").load()[course].access_token
    answer = side.server.api(
        "GET", path("courses", course, "submissions"), token, params={"assignment_id": assignment}
    )
    return len(answer.json()["submissions"])


def run_collect(run: BurstRun) -> None:
    """Collect the burst with the side's ``ExchangeCollect``; check every student's bytes."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    run.side.run("ExchangeCollect", run.instructor, run.course, "burst", check_owner=False)
    run.collect = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    run.collect_cpu = (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)
    collected = 0
    for name, digest in run.digests.items():
        file = run.instructor / "submitted" / name / "burst" / "data.bin"
        if file.is_file() and sha256_of(file) == digest:
            collected += 1
    run.collected = collected


# -- the big transfer ---------------------------------------------------------------------------
@dataclass
class BigRun:
    release: float
    fetch: float
    intact: bool


def run_big(
    side: Side,
    work: Path,
    course: str,
    source: Path,
    digest: str,
    during: Callable[[str], Any] | None = None,
) -> BigRun:
    """Release ``source`` (hard-linked as ``data.bin``) and fetch it as one student.
    ``during(label)`` is a context manager factory wrapped around each transfer (memory)."""
    instructor = side.user(work / "instructor", "bench-instructor", course, "Instructor")
    student = side.user(work / "student", "big-student", course)
    write_release(instructor, "big", source)
    timings = []
    for class_name, home, who in (
        ("ExchangeReleaseAssignment", instructor, ""),
        ("ExchangeFetchAssignment", student, "big-student"),
    ):
        with during(class_name) if during else nullcontext():
            start = time.perf_counter()
            side.run(class_name, home, course, "big", who)
            timings.append(time.perf_counter() - start)
    intact = sha256_of(student / "big" / "data.bin") == digest
    shutil.rmtree(work)
    return BigRun(timings[0], timings[1], intact)


# -- lists --------------------------------------------------------------------------------------
def populate_floor(side: Side, course: str, assignments: list[str], submitters: list[str]) -> None:
    """The default exchange's directories as ``nbgrader release_assignment`` and
    ``nbgrader submit`` leave them: one outbound folder per assignment, one inbound folder per
    submission (``student+assignment+timestamp+random``)."""
    root = Path(side.settings["root"], course)
    for assignment in assignments:
        folder = root / "outbound" / assignment
        folder.mkdir(parents=True)
        (folder / f"{assignment}.ipynb").write_bytes(NOTEBOOK)
    inbound = root / "inbound"
    inbound.mkdir(parents=True)
    stamp = "2026-12-02 10:00:00.000000 UTC"
    for student in submitters:
        for assignment in assignments:
            folder = inbound / f"{student}+{assignment}+{stamp}+{os.urandom(6).hex()}"
            folder.mkdir()
            (folder / f"{assignment}.ipynb").write_bytes(NOTEBOOK)
            (folder / "timestamp.txt").write_text(stamp)


def time_list(side: Side, home: Path, course: str, runs: int, **traits: Any) -> tuple[float, int]:
    """Mean seconds of ``runs`` in-process ``ExchangeList`` runs (after one warm-up), and the
    number of entries listed."""
    listed = side.run("ExchangeList", home, course, **traits)
    start = time.perf_counter()
    for _ in range(runs):
        listed = side.run("ExchangeList", home, course, **traits)
    return (time.perf_counter() - start) / runs, len(listed)
