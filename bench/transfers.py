"""Side-by-side benchmark: nbgrader's exchange classes, in-process, against nbgrader's default
exchange (a shared directory on the same host: the floor) and against lti-exchange, in the same
run, on SQLite, PostgreSQL and S3 storage.

For each backend it starts the real service under gunicorn (``config/gunicorn.conf.py``) on a
free loopback port with a temporary data directory and measures:

1. ``big``: a large release and its fetch (MB/s, server memory growth);
2. ``burst``: a deadline burst, every student fetching the release and submitting 1 MiB, 16 at a
   time (wall time, p99 latencies, nothing lost, server CPU per request);
3. ``collect``: collecting that burst with ``ExchangeCollect``;
4. ``lists``: ``ExchangeList`` (instructor ``--inbound``, student), the API's list endpoints
   and their SQL query counts, and (first backend) the ``nbgrader list --inbound`` CLI.

Then one more burst with the server profiled (``LTI_EXCHANGE_PROFILE_DIR``): the top 20
functions; and the time of ``lti-exchange token issue``. Targets print PASS or FAIL; the script
always exits 0.

Run ``.venv/bin/python bench/transfers.py --help``; see ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from common import (
    BIN,
    MB,
    ROOT,
    THREADS,
    MiB,
    Report,
    RssSampler,
    Server,
    access_log_count,
    baseline_rss,
    child_pids,
    context_switches,
    cpu_split,
    cpu_used,
    external_s3,
    moto_s3,
    path,
    percentile,
    place_server,
    postgres_cpu,
    scratch_postgres,
    stopwatch,
    tar_bytes,
    timed_runs,
    upload_bytes,
    workers_cpu,
)
from exchange_classes import (
    BigRun,
    BurstRun,
    count_submissions,
    floor_app_side,
    floor_side,
    populate_floor,
    prepare_burst,
    run_big,
    run_burst,
    run_collect,
    service_side,
    sha256_of,
    time_list,
)
from machine import file_create_cpu, page_cache_rates, steal_seconds
from server_profile import merged_stats, print_top
from stack_floor import floor_server

HERE = Path(__file__).resolve().parent
BACKENDS = ("sqlite", "postgresql", "s3")
EXCHANGE_FACTORY = {
    "exchange": "Exchange",
    "fetch_assignment": "ExchangeFetchAssignment",
    "fetch_feedback": "ExchangeFetchFeedback",
    "release_assignment": "ExchangeReleaseAssignment",
    "release_feedback": "ExchangeReleaseFeedback",
    "list": "ExchangeList",
    "submit": "ExchangeSubmit",
    "collect": "ExchangeCollect",
}


# -- the side-by-side table ---------------------------------------------------------------------
@dataclass
class SideBySide:
    """Rows of (backend, workload, default exchange, lti-exchange, ratio, target, verdict)."""

    rows: list[tuple[str, ...]] = field(default_factory=list)
    backend: str = ""

    def add(
        self,
        report: Report,
        workload: str,
        floor: str,
        ours: str,
        ratio: float | None = None,
        target: str = "",
        ok: bool | None = None,
    ) -> None:
        ratio_text = f"{ratio:.2f}×" if ratio is not None else ""
        verdict = {True: "PASS", False: "FAIL", None: ""}[ok]
        self.rows.append((self.backend, workload, floor, ours, ratio_text, target, verdict))
        value = f"default {floor.strip() or '—'} | lti-exchange {ours.strip()}"
        if ratio_text:
            value += f" | {ratio_text}"
        report.add(workload, value, target, ok)

    def print(self) -> None:
        header = ("backend", "workload", "default exchange", "lti-exchange", "ratio", "target", "")
        rows = [header, *self.rows]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        print("\nSide by side (default exchange = nbgrader's shared directory, same run)")
        for i, row in enumerate(rows):
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            if i == 0:
                print("  ".join("-" * w for w in widths))


def secs(value: float) -> str:
    return f"{value:.3f} s"


def mb_s(size: int, seconds: float) -> str:
    return f"{size / MB / seconds:.0f} MB/s"


# -- 1. big transfer through the classes ----------------------------------------------------------
def warm_up(server: Server, token: str, course: str, rounds: int) -> None:
    """Release and fetch a small archive ``rounds`` times on fresh connections, so that every
    worker has served both paths before the memory baseline is taken."""
    url_path = path("courses", course, "assignments", "warm-up")
    for _ in range(rounds):
        upload_bytes(server, token, url_path + "/releases", tar_bytes({"a.bin": os.urandom(MiB)}))
        response = requests.get(
            f"{server.url}/api/v1/{url_path}/archive",
            headers={"Authorization": f"Bearer {token}"},
            stream=True,
            timeout=300,
        )
        with response:
            for _chunk in response.iter_content(MiB):
                pass


def bench_big(
    server: Server,
    work: Path,
    source: Path,
    digest: str,
    report: Report,
    table: SideBySide,
    run_id: str,
) -> dict[str, float]:
    """Release ``source`` and fetch it, with the default exchange and with lti-exchange.

    Each side runs twice, in the order default, ours, ours, default, and keeps its faster time
    of each transfer: which side finds cheap page-cache pages depends on what ran just before
    (README, "The machine's page cache"), and this order gives both sides a first and a last
    turn."""
    size = source.stat().st_size

    def floor_run(turn: int) -> BigRun:
        exchange = work / f"big-floor-x{turn}"
        course = f"big-{run_id}-{turn}"
        run = run_big(floor_side(exchange), work / "big-floor", course, source, digest)
        shutil.rmtree(exchange)
        return run

    first_floor = floor_run(1)
    warm_course = f"big-{run_id}-warm"
    warm_up(server, server.token("bench-warm", warm_course, "Instructor"), warm_course, 12)
    baseline = baseline_rss(server.process.pid)
    sampler = RssSampler(server.process.pid)
    sampler.start()
    peaks: dict[str, int] = {}

    @contextmanager
    def during(label: str) -> Iterator[None]:
        sampler.reset()
        yield
        peaks[label] = max(peaks.get(label, 0), sampler.peak)

    try:
        ours_runs = [
            run_big(
                service_side(server),
                work / "big-ours",
                f"big-{run_id}-{turn}",
                source,
                digest,
                during,
            )
            for turn in (2, 3)
        ]
    finally:
        sampler.stop()
    floor = best_of(first_floor, floor_run(4))
    ours = best_of(*ours_runs)
    mib = size // MiB
    for label, floor_s, ours_s, target_mb in (
        ("release", floor.release, ours.release, 400),
        ("fetch", floor.fetch, ours.fetch, 1000),
    ):
        rate = size / MB / ours_s
        table.add(
            report,
            f"big: {mib} MiB {label} (best of 2)",
            f"{mb_s(size, floor_s)} ({floor_s:.2f} s)",
            f"{mb_s(size, ours_s)} ({ours_s:.2f} s)",
            ours_s / floor_s,
            f"≥ {target_mb} MB/s",
            rate >= target_mb,
        )
    for label, class_name in (
        ("release", "ExchangeReleaseAssignment"),
        ("fetch", "ExchangeFetchAssignment"),
    ):
        growth = (peaks[class_name] - baseline) / MB
        table.add(
            report,
            f"big: server RSS growth during {label}",
            "",
            f"{growth:.1f} MB (baseline {baseline / MB:.0f} MB)",
            target="< 64 MB",
            ok=growth < 64,
        )
    table.add(
        report,
        "big: fetched file intact (SHA-256)",
        "yes" if floor.intact else "NO",
        "yes" if ours.intact else "NO",
        target="intact",
        ok=floor.intact and ours.intact,
    )
    return {"big release": ours.release, "big fetch": ours.fetch}


def best_of(first: BigRun, second: BigRun) -> BigRun:
    """Each transfer's faster time of two runs; intact only if both were."""
    return BigRun(
        min(first.release, second.release),
        min(first.fetch, second.fetch),
        first.intact and second.intact,
    )


# -- 2 and 3. burst and collect through the classes ---------------------------------------------
def bench_burst(
    server: Server,
    work: Path,
    students: int,
    release: bytes,
    report: Report,
    table: SideBySide,
    run_id: str,
    collect: bool,
    clients: str = "threads",
    floor_app: bool = True,
) -> dict[str, float]:
    """The deadline burst (and collect) with both exchanges, one after the other; with
    ``floor_app``, then the plugin against ``bench/floor_app.py`` (the server's floor)."""
    course = f"burst-{run_id}"
    floor = prepare_burst(floor_side(work / "floor-x"), work / "floor", course, students, release)
    steal_before = steal_seconds()
    run_burst(floor, work / "floor", clients)
    floor_steal = steal_seconds() - steal_before
    floor.stored = count_submissions(floor.side, course, floor.instructor, "burst")

    ours = prepare_burst(service_side(server), work / "ours", course, students, release)
    on_postgres = server.env["LTI_EXCHANGE_DATABASE_URL"].startswith("postgresql")
    database_before = postgres_cpu() if on_postgres else {}
    cpu_before, log_before = workers_cpu(server), access_log_count(server)
    switches_before = {pid: context_switches(pid) for pid in server.worker_pids()}
    steal_before = steal_seconds()
    run_burst(ours, work / "ours", clients)
    ours_steal = steal_seconds() - steal_before
    cpu_user, cpu_system = cpu_used(cpu_before, workers_cpu(server))
    switches = cpu_used(switches_before, {p: context_switches(p) for p in server.worker_pids()})
    database = sum(cpu_used(database_before, postgres_cpu())) if on_postgres else None
    cpu = cpu_user + cpu_system
    requests_seen = access_log_count(server) - log_before
    ours.stored = count_submissions(ours.side, course, ours.instructor, "burst")

    table.add(
        report,
        f"burst: {students} students fetch + submit, wall",
        secs(floor.wall),
        secs(ours.wall),
        ours.wall / floor.wall,
        "≤ 2× default",
        ours.wall <= 2 * floor.wall,
    )
    for label, floor_values, ours_values in (
        ("submit", floor.submit, ours.submit),
        ("fetch", floor.fetch, ours.fetch),
    ):
        p99 = percentile(ours_values, 99)
        table.add(
            report,
            f"burst: {label} p50 / p99",
            f"{percentile(floor_values, 50):.3f} / {percentile(floor_values, 99):.3f} s",
            f"{percentile(ours_values, 50):.3f} / {p99:.3f} s",
            target="p99 < 0.25 s",
            ok=p99 < 0.25,
        )
    report.add(
        "burst: client CPU (the students' nbgrader, "
        + ("one process)" if clients == "threads" else f"{THREADS} processes)"),
        f"default {floor.client_cpu:.2f} s | lti-exchange {ours.client_cpu:.2f} s "
        f"(of {floor.wall:.2f} s / {ours.wall:.2f} s wall)",
    )
    report.add(
        "burst: CPU time the hypervisor gave to other guests (steal)",
        f"default {floor_steal:.2f} s | lti-exchange {ours_steal:.2f} s",
    )
    inside = server.server_seconds("POST", f"/{course}/assignments/burst/submissions")
    if inside:
        report.add(
            "burst: server-side time per submit (access log)",
            f"p50 {percentile(inside, 50):.3f} s, p99 {percentile(inside, 99):.3f} s",
        )
    table.add(
        report,
        "burst: submissions stored",
        f"{floor.stored}/{students}",
        f"{ours.stored}/{students}",
        target="nothing lost",
        ok=floor.stored == students and ours.stored == students,
    )
    per_mb = cpu / (2 * students)
    table.add(
        report,
        "burst: server CPU per 1 MB request",
        "",
        f"{per_mb * 1000:.1f} ms ({cpu:.2f} s / {2 * students}; "
        f"{cpu * 1000 / max(requests_seen, 1):.1f} ms × {requests_seen} requests; "
        f"user {cpu_user:.2f} s, system {cpu_system:.2f} s)",
        target="≤ 3 ms",
        ok=per_mb <= 0.003,
    )
    if database is not None:  # beside the target: the database is not the service
        report.add(
            "burst: PostgreSQL's own CPU per 1 MB request",
            f"{database * 1000 / (2 * students):.1f} ms ({database:.2f} s over the burst, "
            "every PostgreSQL process on the machine; sharing the same CPUs)",
        )
    if floor_app:
        service = (per_mb, switches[0] / (2 * students), switches[1] / (2 * students))
        bench_floor_app_burst(server, work, course, students, release, clients, report, service)
    numbers = {"burst wall": ours.wall, "burst submit p99": percentile(ours.submit, 99)}
    if collect:
        numbers["collect"] = bench_collect(floor, ours, students, report, table)
    shutil.rmtree(work / "floor")
    shutil.rmtree(work / "floor-x")
    shutil.rmtree(work / "ours")
    return numbers


def bench_floor_app_burst(
    server: Server,
    work: Path,
    course: str,
    students: int,
    release: bytes,
    clients: str,
    report: Report,
    service: tuple[float, float, float],
) -> None:
    """The same burst, with the plugin, against ``bench/floor_app.py`` behind the service's
    front door and as many workers: what any exchange's server must spend (HTTP, ``sendfile``,
    a durable blob with its SHA-256) under this burst's load, next to the service's CPU and
    context switches per request (``service``)."""
    service_per_mb, service_voluntary, service_involuntary = service
    folder, users = work / "floor-app", work / "floor-app-users"
    folder.mkdir()
    process, port = floor_server(folder, len(server.worker_pids()), ("burst",))
    try:
        blobs = folder / "store" / "blobs" / "submissions"
        side = floor_app_side(server, f"http://127.0.0.1:{port}", blobs)
        run = prepare_burst(side, users, course, students, release)
        pids = child_pids(process.pid)
        before = {pid: cpu_split(pid) for pid in pids}
        switches_before = {pid: context_switches(pid) for pid in pids}
        steal_before = steal_seconds()
        run_burst(run, users, clients)
        steal = steal_seconds() - steal_before
        pids = child_pids(process.pid)  # again: a worker may have been replaced
        user, system = cpu_used(before, {pid: cpu_split(pid) for pid in pids})
        voluntary, involuntary = cpu_used(
            switches_before, {pid: context_switches(pid) for pid in pids}
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(users, ignore_errors=True)
    floor_per_mb = (user + system) / (2 * students)
    report.add(
        "burst: the plugin against the floor app (no token, SQL or archive check)",
        f"wall {run.wall:.3f} s, submit p99 {percentile(run.submit, 99):.3f} s, fetch p99 "
        f"{percentile(run.fetch, 99):.3f} s, stored {run.stored}/{students}, client CPU "
        f"{run.client_cpu:.2f} s, steal {steal:.2f} s",
    )
    report.add(
        "burst: server CPU per 1 MB request, floor app / service",
        f"{floor_per_mb * 1000:.1f} ms (user {user:.2f} s, system {system:.2f} s) / "
        f"{service_per_mb * 1000:.1f} ms: the service's own work "
        f"{(service_per_mb - floor_per_mb) * 1000:+.1f} ms",
    )
    requests = 2 * students
    report.add(
        "burst: workers' context switches per request, floor app / service",
        f"voluntary {voluntary / requests:.0f} / {service_voluntary:.0f}, involuntary "
        f"{involuntary / requests:.1f} / {service_involuntary:.1f} (every thread; waits for "
        "the GIL, locks and I/O are voluntary)",
    )


def bench_collect(
    floor: BurstRun, ours: BurstRun, students: int, report: Report, table: SideBySide
) -> float:
    run_collect(floor)
    run_collect(ours)
    table.add(
        report,
        f"collect: {students} submissions",
        secs(floor.collect),
        secs(ours.collect),
        ours.collect / floor.collect,
        "≤ 2× default",
        ours.collect <= 2 * floor.collect,
    )
    (floor_user, floor_system), (ours_user, ours_system) = floor.collect_cpu, ours.collect_cpu
    report.add(
        "collect: the instructor's CPU (user + system)",
        f"default {floor_user:.2f} + {floor_system:.2f} s | lti-exchange {ours_user:.2f} + "
        f"{ours_system:.2f} s (system: writing the files; user: for lti-exchange also the "
        "SHA-256 of every archive and reading the tar)",
    )
    table.add(
        report,
        "collect: collected intact (SHA-256)",
        f"{floor.collected}/{students}",
        f"{ours.collected}/{students}",
        target="nothing lost",
        ok=floor.collected == students and ours.collected == students,
    )
    return ours.collect


# -- 4. lists -------------------------------------------------------------------------------------
def query_count(response: requests.Response) -> int:
    return int(response.headers["X-Query-Count"])


def populate_course(
    server: Server, course: str, assignments: int, students: int, submitters: int
) -> tuple[str, list[str]]:
    """Release ``assignments`` tiny assignments, enrol ``students``, and have the first
    ``submitters`` submit to every assignment (16 threads). Returns the tokens."""
    instructor = server.token("bench-instructor", course, "Instructor")
    names = [f"ps{i:03d}" for i in range(1, assignments + 1)]
    release = tar_bytes({"ps.ipynb": b'{"cells": []}'})
    for name in names:
        upload_bytes(
            server, instructor, path("courses", course, "assignments", name, "releases"), release
        )
    tokens = [server.token(f"student{i:04d}", course) for i in range(students)]
    work = tar_bytes({"ps.ipynb": b'{"cells": [], "answer": 42}'})
    jobs = [(tokens[s], name) for s in range(submitters) for name in names]

    def submit(job: tuple[str, str]) -> None:
        token, name = job
        upload_bytes(
            server, token, path("courses", course, "assignments", name, "submissions"), work
        )

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(submit, jobs))
    return instructor, tokens


@dataclass
class CliTimes:
    """Best-of-N seconds: wall clock and CPU (user + system) of the child process."""

    wall: float
    cpu: float


@dataclass
class CliListing:
    """Best-of-N CPU and wall of the ``nbgrader`` commands ``bench_lists`` times."""

    listing: CliTimes  # ``nbgrader list --inbound`` of the big course
    one_row: CliTimes  # the same command for a course with one submission
    startup: CliTimes  # ``nbgrader --version``
    listing_after_import: float  # CPU of the big listing once nbgrader was imported
    one_row_after_import: float


def nbgrader_list_time(
    server: Server,
    work: Path,
    courses: dict[str, str],
    expected: int,
    runs: int,
) -> CliListing:
    """Fastest of ``runs`` runs each of ``nbgrader list --inbound`` for the first of ``courses``
    (course: the instructor's token), of the same for the second (one submission) and of
    ``nbgrader --version``, interleaved, so that load from other jobs hits them alike."""
    home = work / "nbgrader-home"
    (home / ".jupyter").mkdir(parents=True)
    lines = [f"c.ExchangeFactory.{k} = 'nbgrader_plugin.{v}'" for k, v in EXCHANGE_FACTORY.items()]
    lines.append(f"c.Exchange.service_url = {server.url!r}")
    (home / ".jupyter" / "nbgrader_config.py").write_text("\n".join(lines) + "\n")
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    for token in courses.values():
        login = [str(BIN / "lti-exchange"), "login", "--url", server.url, "--token", token]
        subprocess.run(login, env=env, cwd=home, check=True, capture_output=True)

    def run(args: list[str]) -> tuple[CliTimes, str]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        command = [str(BIN / "python"), str(HERE / "nbgrader_timed.py"), *args]
        done = subprocess.run(command, env=env, cwd=home, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return CliTimes(seconds, cpu), done.stdout + done.stderr

    big, small = list(courses)
    listing, one_row, version = [], [], []
    listing_inside, one_row_inside = [], []
    for _ in range(runs):
        times, output = run(["list", "--inbound", "--course", big])
        listing.append(times)
        listing_inside.append(_after_import(output))
        times, small_output = run(["list", "--inbound", "--course", small])
        one_row.append(times)
        one_row_inside.append(_after_import(small_output))
        version.append(run(["--version"])[0])
    listed = sum(" (no feedback available)" in line for line in output.splitlines())
    if listed != expected:
        raise AssertionError(f"nbgrader list --inbound showed {listed} submissions, not {expected}")

    def best(samples: list[CliTimes]) -> CliTimes:
        return CliTimes(min(t.wall for t in samples), min(t.cpu for t in samples))

    return CliListing(
        best(listing), best(one_row), best(version), min(listing_inside), min(one_row_inside)
    )


def _after_import(output: str) -> float:
    """The CPU ``bench/nbgrader_timed.py`` printed for the command after nbgrader's import."""
    for line in output.splitlines():
        if line.startswith("nbgrader-cpu-after-import: "):
            return float(line.split(": ", 1)[1])
    raise AssertionError(f"bench/nbgrader_timed.py printed no CPU time:\n{output[-2000:]}")


def bench_lists(
    server: Server,
    work: Path,
    assignments: int,
    students: int,
    report: Report,
    table: SideBySide,
    run_id: str,
    cli_runs: int,
) -> None:
    """List speed and query counts with ``assignments`` × 30 submissions in one course;
    ``cli_runs`` > 0 also times the ``nbgrader list --inbound`` CLI."""
    submitters = min(30, students)
    course = f"lists-{run_id}"
    with stopwatch() as elapsed:
        instructor, tokens = populate_course(server, course, assignments, students, submitters)
    expected = assignments * submitters
    report.add(
        f"lists: setup ({assignments} releases, {expected} submits)",
        f"{elapsed():8.2f} s",
    )
    submissions = path("courses", course, "submissions")
    listing = path("courses", course, "assignments")

    seconds, answer = timed_runs(lambda: server.api("GET", submissions, instructor), 5)
    rows = len(answer.json()["submissions"])
    if rows != expected:
        raise AssertionError(f"lists: instructor saw {rows} submissions, expected {expected}")
    instructor_queries = query_count(answer)
    report.add(
        f"lists: instructor GET submissions ({rows} rows)",
        f"{seconds * 1000:8.1f} ms, {instructor_queries} queries",
    )
    seconds, answer = timed_runs(lambda: server.api("GET", listing, instructor), 20)
    report.add(
        f"lists: instructor GET assignments ({assignments})",
        f"{seconds * 1000:8.1f} ms, {query_count(answer)} queries",
    )

    student = tokens[0]
    counts = {}
    for label, url_path in (("assignments", listing), ("submissions", submissions)):
        seconds, answer = timed_runs(lambda u=url_path: server.api("GET", u, student), 20)
        counts[label] = query_count(answer)
        report.add(
            f"lists: student GET {label}",
            f"{seconds * 1000:8.1f} ms, {counts[label]} queries",
            "< 50 ms",
            seconds < 0.050,
        )

    small = f"lists1-{run_id}"
    small_instructor, small_tokens = populate_course(server, small, 1, 1, 1)
    for label, url_path in (
        ("assignments", path("courses", small, "assignments")),
        ("submissions", path("courses", small, "submissions")),
    ):
        seconds, answer = timed_runs(lambda u=url_path: server.api("GET", u, small_tokens[0]), 20)
        report.add(
            f"lists: student GET {label}, 1-assignment course",
            f"{seconds * 1000:8.1f} ms, {query_count(answer)} queries "
            f"(vs {counts[label]} with {assignments})",
            "same query count",
            query_count(answer) == counts[label],
        )
    answer = server.api("GET", path("courses", small, "submissions"), small_instructor)
    report.add(
        "lists: instructor GET submissions, 1-row course",
        f"{query_count(answer)} queries (vs {instructor_queries} with {rows} rows)",
        "same query count",
        query_count(answer) == instructor_queries,
    )
    lists_with_classes(server, work, course, assignments, submitters, report, table)
    if cli_runs <= 0:
        return

    courses = {course: instructor, small: small_instructor}
    timed = nbgrader_list_time(server, work, courses, expected, cli_runs)
    cli, one_row, startup = timed.listing, timed.one_row, timed.startup
    inside = server.server_seconds("GET", f"/courses/{course}/submissions")[-1]
    report.add(
        f"lists: nbgrader --version (start-up, best of {cli_runs})",
        f"{startup.wall:8.2f} s (CPU {startup.cpu:.2f} s)",
    )
    report.add(
        f"lists: nbgrader list --inbound ({expected}), total",
        f"{cli.wall:8.2f} s (CPU {cli.cpu:.2f} s; its GET submissions {inside:.2f} s server-side)",
    )
    report.add(
        "lists: nbgrader list --inbound, minus --version",
        f"CPU {cli.cpu - startup.cpu:+.2f} s (wall {cli.wall - startup.wall:+.2f} s): the "
        "plugin, and nbgrader's own list command and printing",
    )
    report.add(
        "lists: nbgrader list --inbound, 1 submission",
        f"{one_row.wall:8.2f} s (CPU {one_row.cpu:.2f} s)",
    )
    report.add(
        "lists: nbgrader list --inbound after nbgrader's import",
        f"CPU {timed.listing_after_import:.3f} s ({expected} submissions), "
        f"{timed.one_row_after_import:.3f} s (1): nbgrader's list command with the plugin",
        "CPU < 0.2 s",
        timed.listing_after_import < 0.2,
    )
    report.add(
        f"lists: nbgrader list --inbound, {expected} submissions minus 1",
        f"CPU {timed.listing_after_import - timed.one_row_after_import:+.3f} s after the import "
        f"({cli.cpu - one_row.cpu:+.2f} s in all, wall {cli.wall - one_row.wall:+.2f} s)",
    )


def lists_with_classes(
    server: Server,
    work: Path,
    course: str,
    assignments: int,
    submitters: int,
    report: Report,
    table: SideBySide,
) -> None:
    """``ExchangeList --inbound`` as the instructor and ``ExchangeList`` as a student, with the
    default exchange (the same names, filled in directly) and with lti-exchange."""
    names = [f"ps{i:03d}" for i in range(1, assignments + 1)]
    students = [f"student{i:04d}" for i in range(submitters)]
    floor = floor_side(work / "lists-floor-x")
    populate_floor(floor, course, names, students)
    ours = service_side(server)
    runs = 3
    timings = {}
    for label, side in (("floor", floor), ("ours", ours)):
        home = work / f"lists-{label}"
        teacher = side.user(home / "instructor", "bench-instructor", course, "Instructor")
        inbound = time_list(side, teacher, course, runs, inbound=True)
        student = side.user(home / "student", students[0], course)
        outbound = time_list(side, student, course, runs * 3)
        timings[side.name] = (inbound, outbound)
    (f_in, f_count), (f_out, _f_released) = timings[floor.name]
    (o_in, o_count), (o_out, o_released) = timings[ours.name]
    table.add(
        report,
        f"lists: ExchangeList --inbound ({o_count} listed)",
        f"{f_in * 1000:.0f} ms ({f_count})",
        f"{o_in * 1000:.0f} ms",
        o_in / f_in,
        "≤ default",
        o_in <= f_in and o_count == f_count == assignments * submitters,
    )
    table.add(
        report,
        f"lists: a student's ExchangeList ({o_released} released)",
        f"{f_out * 1000:.1f} ms",
        f"{o_out * 1000:.1f} ms",
        o_out / f_out,
        "< 50 ms",
        o_out < 0.050,
    )
    shutil.rmtree(work / "lists-floor")
    shutil.rmtree(work / "lists-ours")
    shutil.rmtree(work / "lists-floor-x")


# -- where the server's time goes ---------------------------------------------------------------
def bench_profile(args: argparse.Namespace, work: Path, release: bytes, report: Report) -> None:
    """One more burst (lti-exchange only, SQLite) with every worker profiling its requests."""
    data_dir = work / "server-profile"
    data_dir.mkdir()
    profile_dir = work / "profiles"
    server = Server.start(
        f"sqlite:///{data_dir / 'bench.sqlite3'}",
        data_dir,
        args.workers,
        {
            "LTI_EXCHANGE_PROFILE_DIR": str(profile_dir),
            "LTI_EXCHANGE_PROFILE_CLOCK": args.profile_clock,
        },
    )
    try:
        run_id = uuid.uuid4().hex[:6]
        ours = prepare_burst(
            service_side(server), work / "profiled", f"prof-{run_id}", args.students, release
        )
        log_before = access_log_count(server)
        run_burst(ours, work / "profiled", args.clients)
        requests_seen = access_log_count(server) - log_before
    finally:
        server.stop()  # the workers write their profiles as they exit
    report.add(
        "profile: burst with the server profiled, wall",
        f"{ours.wall:8.2f} s ({requests_seen} requests; profiling slows the server down)",
    )
    stats = merged_stats(profile_dir)
    if stats is None:
        report.add("profile: no worker profile written", str(profile_dir))
        return
    print_top(stats, requests_seen, args.profile_clock)
    if args.profile_out:
        stats.dump_stats(args.profile_out)
        print(f"(merged profile in {args.profile_out}: python -m pstats {args.profile_out})")
    shutil.rmtree(work / "profiled")


# -- lti-exchange token issue ---------------------------------------------------------------------
def bench_tokens(work: Path, report: Report, students: int) -> None:
    """Seconds per ``lti-exchange token issue``; with ``--from-csv``, ``students`` at once."""
    data_dir = work / "tokens"
    data_dir.mkdir()
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(data_dir),
        "LANG": "C.UTF-8",
        "LTI_EXCHANGE_DATA_DIR": str(data_dir),
        "LTI_EXCHANGE_DATABASE_URL": f"sqlite:///{data_dir / 'tokens.sqlite3'}",
    }
    tool = str(BIN / "lti-exchange")
    subprocess.run([tool, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
    issue = [tool, "token", "issue", "--org", "bench", "--course", "workshop", "--role", "Learner"]
    times = []
    for i in range(3):
        start = time.perf_counter()
        subprocess.run([*issue, "--username", f"u{i}"], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    report.add("tokens: lti-exchange token issue, one token", f"{min(times):8.2f} s (best of 3)")
    help_text = subprocess.run(
        [tool, "token", "issue", "--help"], env=env, capture_output=True, text=True
    ).stdout
    if "--from-csv" not in help_text:
        report.add(
            f"tokens: {students} tokens, one process each",
            f"{students * min(times):8.1f} s (estimated: `token issue --help` shows no "
            "--from-csv, so the bulk target could not be timed)",
        )
        return
    csv_file = data_dir / "students.csv"
    rows = [f"csv{i:04d},workshop,Learner" for i in range(students)]
    csv_file.write_text("username,course,role\n" + "\n".join(rows) + "\n")
    start = time.perf_counter()
    done = subprocess.run(
        [tool, "token", "issue", "--org", "bench", "--from-csv", str(csv_file)],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        report.add(
            f"tokens: --from-csv with {students} rows failed",
            (done.stderr or done.stdout).strip().splitlines()[-1][:120],
        )
        return
    issued = sum(",csv" in line for line in done.stdout.splitlines())  # one row per token
    report.add(
        f"tokens: token issue --from-csv, {students} tokens",
        f"{seconds:8.2f} s ({issued} issued, {seconds / max(issued, 1) * 1000:.1f} ms each)",
        "< 3 s, all issued",
        seconds < 3 and issued == students,
    )


# -- backends -----------------------------------------------------------------------------------
@contextmanager
def backend(name: str, work: Path, args: argparse.Namespace) -> Iterator[tuple[str, dict]]:
    """The database URL and extra server environment of one backend."""
    sqlite = f"sqlite:///{work / f'server-{name}' / 'bench.sqlite3'}"
    if name == "sqlite":
        yield sqlite, {}
    elif name == "postgresql":
        with scratch_postgres(args.postgres_url) as url:
            yield url, {}
    elif args.s3_endpoint:
        with external_s3(args.s3_endpoint, uuid.uuid4().hex[:12]) as s3_env:
            yield sqlite, s3_env
    else:
        with moto_s3(work) as s3_env:
            yield sqlite, s3_env


def run_backend(
    args: argparse.Namespace,
    work: Path,
    name: str,
    wanted: set[str],
    inputs: dict,
    report: Report,
    table: SideBySide,
    cli_runs: int,
) -> dict[str, float]:
    """Start a server on one backend and run the wanted measurements; the S3-ratio inputs."""
    run_id = uuid.uuid4().hex[:6]
    data_dir = work / f"server-{name}"
    data_dir.mkdir()
    numbers: dict[str, float] = {}
    with backend(name, work, args) as (database_url, extra_env):
        server = Server.start(database_url, data_dir, args.workers, extra_env)
        report.prefix, table.backend = f"[{name}] ", name
        try:
            print(
                f"\n== {name}: lti-exchange at {server.url}, {len(server.worker_pids())} "
                f"gunicorn workers, database {database_url.split('://')[0]}, "
                f"storage {s3_label(args) if extra_env else 'local directory'}\n"
            )
            if "big" in wanted:
                with attempt(report, "big"):
                    numbers.update(
                        bench_big(
                            server, work, inputs["big"], inputs["big_sha"], report, table, run_id
                        )
                    )
            if wanted & {"burst", "collect"}:
                with attempt(report, "burst"):
                    numbers.update(
                        bench_burst(
                            server,
                            work,
                            args.students,
                            inputs["release"],
                            report,
                            table,
                            run_id,
                            "collect" in wanted,
                            args.clients,
                            not args.no_floor_app,
                        )
                    )
            if "lists" in wanted:
                with attempt(report, "lists"):
                    bench_lists(
                        server,
                        work,
                        args.assignments,
                        args.students,
                        report,
                        table,
                        run_id,
                        cli_runs,
                    )
            if args.raw:
                with attempt(report, "raw"):
                    run_raw(server, work, args, wanted, report, run_id)
        finally:
            server.stop()
            report.prefix = ""
    return numbers


@contextmanager
def attempt(report: Report, label: str) -> Iterator[None]:
    """Run one measurement; a failure prints its traceback and a FAIL line, and the run goes on
    (a broken measurement must not hide the others' numbers)."""
    try:
        yield
    except Exception as exc:
        traceback.print_exc()
        report.add(f"{label}: failed", f"{type(exc).__name__}: {exc}"[:300], "runs", False)


def run_raw(
    server: Server,
    work: Path,
    args: argparse.Namespace,
    wanted: set[str],
    report: Report,
    run_id: str,
) -> None:
    """The raw-client measurements (``--raw``): the plugin's HTTP client without the classes."""
    import raw_client

    prefix = report.prefix
    report.prefix = f"{prefix}raw "
    run_id = f"raw{run_id}"  # courses of their own
    try:
        if "big" in wanted:
            raw_client.bench_big(server, work, args.big_mb, report, run_id)
        if wanted & {"burst", "collect"}:
            burst = raw_client.bench_burst(server, work, args.students, report, run_id)
            if "collect" in wanted:
                raw_client.bench_collect(server, work, burst, report)
            shutil.rmtree(work / "burst-tars")
    finally:
        report.prefix = prefix


def s3_label(args: argparse.Namespace) -> str:
    return f"s3 ({args.s3_endpoint})" if args.s3_endpoint else "s3 (moto)"


def print_s3_ratios(
    base: dict[str, float], s3: dict[str, float], report: Report, label: str
) -> None:
    """S3 against the local-directory backend (SQLite both): seconds; target ratio ≤ 1.5."""
    print(f"\n{label} / local directory, both on SQLite (seconds; target: ratio ≤ 1.5)")
    for name, value in base.items():
        if name in s3 and value > 0:
            ratio = s3[name] / value
            report.add(
                f"s3/local: {name}",
                f"{value:8.3f} s local, {s3[name]:.3f} s S3, {ratio:.2f}×",
                "≤ 1.5×",
                ratio <= 1.5,
            )


# -- main -----------------------------------------------------------------------------------------
def make_inputs(work: Path, big_mb: int, wanted: set[str]) -> dict:
    """The content both exchanges get: a 1 MiB release for the burst and the big file."""
    inputs: dict = {"release": os.urandom(MiB)}
    if "big" in wanted:
        big = work / "big.bin"
        with open(big, "wb") as fh:
            for _ in range(big_mb):
                fh.write(os.urandom(MiB))
        inputs["big"], inputs["big_sha"] = big, sha256_of(big)
    return inputs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated: sqlite, postgresql, s3 (SQLite + moto S3); default all three",
    )
    parser.add_argument(
        "--s3-endpoint",
        metavar="URL",
        help="the s3 backend uses this S3 server (AWS_* credentials from the environment; a "
        "bucket is made for the run and removed) instead of starting moto",
    )
    parser.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432",
        help="PostgreSQL server (no database name); a scratch database is created and dropped",
    )
    parser.add_argument("--big-mb", type=int, default=None, help="big transfer size in MiB")
    parser.add_argument("--students", type=int, default=None, help="students in burst and lists")
    parser.add_argument("--assignments", type=int, default=None, help="assignments in lists")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers")
    parser.add_argument("--quick", action="store_true", help="64 MiB, 60 students, 20 assignments")
    parser.add_argument("--skip-big", action="store_true", help="skip the big transfer")
    parser.add_argument("--only", choices=("big", "burst", "collect", "lists"))
    parser.add_argument(
        "--clients",
        choices=("threads", "processes"),
        default="threads",
        help="the burst's 16 students: threads of this process (default) or forked processes",
    )
    parser.add_argument(
        "--no-floor-app",
        action="store_true",
        help="skip the burst against bench/floor_app.py (the server's floor under the burst)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled burst")
    parser.add_argument(
        "--profile-out", metavar="FILE", help="also write the merged server profile (pstats) here"
    )
    parser.add_argument(
        "--profile-clock",
        choices=("wall", "cpu"),
        default="wall",
        help="the profile's clock: wall (waits included, default) or the threads' CPU time",
    )
    parser.add_argument(
        "--no-cli", action="store_true", help="skip the nbgrader CLI and token issue timings"
    )
    parser.add_argument(
        "--raw", action="store_true", help="also the raw-client measurements (plugin internals)"
    )
    parser.add_argument("--tmp-dir", default=None, help="where temp files go (default: $TMPDIR)")
    parser.add_argument(
        "--server-cpus",
        default=None,
        help="run the servers (gunicorn, moto) on these CPUs, e.g. 1, and the students' nbgrader "
        "and the default exchange on the others (production's shape: clients elsewhere)",
    )
    args = parser.parse_args(argv)
    quick = {"big_mb": 64, "students": 60, "assignments": 20}
    full = {"big_mb": 512, "students": 300, "assignments": 100}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = {args.only} if args.only else {"big", "burst", "collect", "lists"}
    if args.skip_big:
        wanted.discard("big")
    if args.tmp_dir:
        tempfile.tempdir = args.tmp_dir
    # nbgrader's Gradebook runs the `alembic` command: the venv's, as under an activated venv
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    report, table = Report(), SideBySide()
    report.add("machine: placement", place_server(args.server_cpus))
    numbers: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="lti-bench-") as tmp:
        work = Path(tmp)
        cold, warm = page_cache_rates(work)
        report.add(
            "machine: writes into new page-cache pages",
            f"{cold:.0f} MB/s with memory freed 3 s before, {warm:.0f} MB/s just after freeing "
            "(a VM returning freed memory to its host makes the first slow: bench/machine.py)",
        )
        report.add(
            "machine: CPU to create a file",
            f"{file_create_cpu(work):.0f} µs in the bench's folder (a file system without a "
            "journal scans past recently deleted inodes: bench/machine.py)",
        )
        inputs = make_inputs(work, args.big_mb, wanted)
        cli_runs = 0 if args.no_cli else (3 if args.quick else 5)
        for name in args.backends:
            with attempt(report, f"[{name}]"):
                numbers[name] = run_backend(
                    args, work, name, wanted, inputs, report, table, cli_runs
                )
            cli_runs = 0  # the CLI once, on the first backend
        if not args.no_profile and wanted & {"burst", "collect"}:
            with attempt(report, "profile"):
                bench_profile(args, work, inputs["release"], report)
        if not args.no_cli:
            with attempt(report, "tokens"):
                bench_tokens(work, report, args.students)
        if "sqlite" in numbers and "s3" in numbers:
            print_s3_ratios(numbers["sqlite"], numbers["s3"], report, s3_label(args))
    table.print()
    report.summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
