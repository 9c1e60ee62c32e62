"""Transfer and listing benchmarks for lti-exchange against a live gunicorn server.

Starts the real service (``config/gunicorn.conf.py``) on a free loopback port with a temporary
data directory, mints tokens in-process with the service's own code, and measures:

1. ``big``: one large release upload and its download (MB/s, server memory growth);
2. ``burst``: many students submitting 1 MiB at a deadline (latency percentiles, wall time);
3. ``collect``: collecting those submissions in one streamed request;
4. ``lists``: listing assignments/submissions through the API and the ``nbgrader list`` CLI.

With ``--storage s3`` the big transfer and the burst run twice, on the local-directory storage and
on S3 (moto's server on loopback, started here), and the S3/local ratios are printed side by side.

Run ``.venv/bin/python bench/transfers.py --help``; see ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nbgrader_plugin.archive import (  # noqa: E402
    HashingReader,
    extract_stream,
    iter_safe_members,
    pack_directory,
)
from nbgrader_plugin.client import ExchangeClient, path  # noqa: E402
from nbgrader_plugin.tokens import TokenEntry  # noqa: E402

BIN = Path(sys.executable).parent
MB = 1_000_000  # throughput and memory are reported in decimal megabytes
MiB = 1024 * 1024
GiB = 1024 * MiB
THREADS = 16
TOKEN_TTL = 6 * 3600
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


# -- reporting ----------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: informational, no target

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: ""}[self.ok]


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    prefix: str = ""  # "[s3] " while the S3 run measures

    def add(self, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        """Record a measurement and print it at once."""
        name = self.prefix + name
        result = Result(name, value, target, ok)
        self.results.append(result)
        tail = f"   [target {target}: {result.verdict}]" if target else ""
        print(f"{name:<52} {value}{tail}", flush=True)

    def summary(self) -> None:
        rows = [("measurement", "value", "target", "")] + [
            (r.name, r.value.strip(), r.target, r.verdict) for r in self.results
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        print("\nSummary")
        for i, row in enumerate(rows):
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            print("  ".join(cells).rstrip())
            if i == 0:
                print("  ".join("-" * width for width in widths))
        failed = sum(r.ok is False for r in self.results)
        passed = sum(r.ok is True for r in self.results)
        print(f"\n{passed} targets met, {failed} missed.")


def mb_per_s(size: int, seconds: float) -> str:
    return f"{size / MB / seconds:8.1f} MB/s ({size / MiB:.0f} MiB in {seconds:.2f} s)"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


# -- the server ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A gunicorn-run service plus in-process access to its database and key ring."""

    url: str
    env: dict[str, str]
    process: subprocess.Popen
    log_path: Path
    http: requests.Session = field(default_factory=requests.Session)
    _state: Any = None

    @classmethod
    def start(
        cls,
        database_url: str,
        data_dir: Path,
        workers: int | None,
        extra_env: dict[str, str] | None = None,
    ) -> Server:
        port = free_port()
        env = {
            "PATH": f"{BIN}:/usr/bin:/bin",
            "HOME": str(data_dir),
            "LANG": "C.UTF-8",
            "LTI_EXCHANGE_DATA_DIR": str(data_dir),
            "LTI_EXCHANGE_DATABASE_URL": database_url,
            "LTI_EXCHANGE_EXPOSE_QUERY_COUNT": "true",
            "LTI_EXCHANGE_BIND": f"127.0.0.1:{port}",
            "LTI_EXCHANGE_LOG_LEVEL": "WARNING",
            "LTI_EXCHANGE_MAX_UPLOAD_BYTES": str(2 * GiB),
            "LTI_EXCHANGE_MAX_UNPACKED_BYTES": str(2 * GiB),
        }
        if workers:
            env["LTI_EXCHANGE_WORKERS"] = str(workers)
        env.update(extra_env or {})
        upgrade = [str(BIN / "lti-exchange"), "db", "upgrade"]
        subprocess.run(upgrade, env=env, check=True, capture_output=True, cwd=ROOT)
        log_path = data_dir / "gunicorn.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    str(BIN / "gunicorn"),
                    "-c",
                    str(ROOT / "config" / "gunicorn.conf.py"),
                    "lti_exchange:create_app()",
                ],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = cls(f"http://127.0.0.1:{port}", env, process, log_path)
        server._wait_healthy()
        return server

    def _wait_healthy(self) -> None:
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not start: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if self._state is not None:
            self._state.engine.dispose()

    def server_seconds(self, method: str, fragment: str) -> list[float]:
        """Server-side durations of requests whose path contains ``fragment`` (access log)."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            parts = line.split()  # "host METHOD /path status bytes 123ms [rid=…]"
            if len(parts) in (6, 7) and parts[1] == method and fragment in parts[2]:
                found.append(int(parts[5].removesuffix("ms")) / 1000)
        return found

    def worker_pids(self) -> list[int]:
        return _children(self.process.pid)

    def token(self, username: str, course: str, role: str = "Learner") -> str:
        """Provision ``username`` in ``course`` with ``role`` and mint an access token."""
        from lti_exchange.services.provisioning import find_or_create_org, provision

        if self._state is None:
            from lti_exchange.app_objects import build_app_objects
            from lti_exchange.config import load_settings

            self._state = build_app_objects(load_settings(self.env))
        with self._state.session_factory() as session:
            org = find_or_create_org(session, "bench-org")
            enrolment = provision(
                session, org=org, username=username, course_code=course, role=role
            )
            session.commit()
            return self._state.tokens.mint(
                user_id=enrolment.user.id,
                org_id=org.id,
                username=username,
                course_code=course,
                course_title=enrolment.course.title,
                role=role,
                lms_user_id=enrolment.user.lms_user_id,
                name=enrolment.user.name,
                email=enrolment.user.email,
                ttl=TOKEN_TTL,
            )

    def client(self, token: str) -> ExchangeClient:
        """The plugin's HTTP client for this token (its own connection)."""
        return ExchangeClient(self.url, TokenEntry.from_access_token(token, self.url))

    def api(self, method: str, url_path: str, token: str, **kwargs: Any) -> requests.Response:
        response = self.http.request(
            method,
            f"{self.url}/api/v1/{url_path}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=300,
            **kwargs,
        )
        response.raise_for_status()
        return response


# -- server memory --------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    except OSError:  # kernel without CONFIG_PROC_CHILDREN: scan /proc
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
        return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> int:
    """Summed VmRSS of ``pid`` and its children (the gunicorn master and its workers)."""
    return _rss(pid) + sum(_rss(child) for child in _children(pid))


class RssSampler(threading.Thread):
    """Samples the server's summed RSS every 20 ms and remembers the peak since the last reset."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._lock = threading.Lock()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            rss = tree_rss(self.pid)
            with self._lock:
                self.peak = max(self.peak, rss)
            time.sleep(self.interval)

    def reset(self) -> None:
        rss = tree_rss(self.pid)
        with self._lock:
            self.peak = rss

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def baseline_rss(pid: int, seconds: float = 1.0) -> int:
    """The server's summed RSS at rest: the highest of the samples over ``seconds``."""
    samples = []
    end = time.time() + seconds
    while time.time() < end:
        samples.append(tree_rss(pid))
        time.sleep(0.02)
    return max(samples)


# -- helpers --------------------------------------------------------------------------------------
def tar_bytes(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar holding ``files``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload_bytes(server: Server, token: str, url_path: str, data: bytes) -> dict:
    client = server.client(token)
    try:
        return client.upload("POST", url_path, io.BytesIO(data), len(data))
    finally:
        client.session.close()


def timed_runs(func: Callable[[], requests.Response], runs: int) -> tuple[float, Any]:
    """Mean seconds of ``runs`` calls (after two discarded warm-up calls), and the last answer."""
    for _ in range(2):
        func()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        answer = func()
        times.append(time.perf_counter() - start)
    return statistics.mean(times), answer


def sha256_file(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        while chunk := fh.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


# -- 1. big transfer ------------------------------------------------------------------------------
def warm_up(server: Server, token: str, course: str, rounds: int) -> None:
    """Release and fetch a small archive ``rounds`` times on fresh connections, so that every
    worker has served the upload and download paths before the memory baseline is taken."""
    url_path = path("courses", course, "assignments", "warm-up")
    for _ in range(rounds):
        upload_bytes(server, token, url_path + "/releases", tar_bytes({"a.bin": os.urandom(MiB)}))
        client = server.client(token)
        with client.download(url_path + "/archive") as response:
            response.raw.read()
        client.session.close()


def bench_big(
    server: Server, work: Path, size_mb: int, report: Report, run_id: str
) -> dict[str, float]:
    """Release one ``size_mb`` MiB random file and download it again, watching server memory."""
    course = f"big-{run_id}"
    token = server.token("bench-instructor", course, "Instructor")
    source = work / "big-source"
    source.mkdir()
    content_hash = hashlib.sha256()
    with open(source / "data.bin", "wb") as fh:
        for _ in range(size_mb):
            chunk = os.urandom(MiB)
            content_hash.update(chunk)
            fh.write(chunk)

    with stopwatch() as elapsed:
        handle, size = pack_directory(source)
    report.add("big: pack_directory (client, not timed below)", mb_per_s(size, elapsed()))

    warm_up(server, token, course, rounds=3 * len(server.worker_pids()))
    sampler = RssSampler(server.process.pid)
    baseline = baseline_rss(server.process.pid)
    sampler.start()
    client = server.client(token)
    try:
        sampler.reset()
        with handle, stopwatch() as elapsed:
            answer = client.upload(
                "POST", path("courses", course, "assignments", "big", "releases"), handle, size
            )
        upload_seconds, upload_peak = elapsed(), sampler.peak
        assert answer["size"] == size, answer

        dest = work / "big-download"
        sampler.reset()
        with stopwatch() as elapsed:
            response = client.download(path("courses", course, "assignments", "big", "archive"))
            with response:
                reader = HashingReader(response.raw)
                extract_stream(reader, dest)
                reader.drain()
        download_seconds, download_peak = elapsed(), sampler.peak
    finally:
        sampler.stop()
        client.session.close()

    if reader.sha256.hexdigest() != response.headers["X-Content-SHA256"]:
        raise AssertionError("big: downloaded bytes do not match X-Content-SHA256")
    if sha256_file(dest / "data.bin") != content_hash.hexdigest():
        raise AssertionError("big: the extracted file differs from the original")
    shutil.rmtree(source)
    shutil.rmtree(dest)

    for label, seconds in (
        ("upload (release)", upload_seconds),
        ("download (fetch)", download_seconds),
    ):
        rate = size / MB / seconds
        report.add(f"big: {label}", mb_per_s(size, seconds), "≥ 200 MB/s", rate >= 200)
    (server_up,) = server.server_seconds("POST", f"/{course}/assignments/big/releases")
    (server_down,) = server.server_seconds("GET", f"/{course}/assignments/big/archive")
    report.add(
        "big: server-side time (access log)",
        f"upload {server_up:.2f} s, download {server_down:.2f} s",
    )
    report.add("big: server RSS baseline (master + workers)", f"{baseline / MB:8.1f} MB")
    for label, peak in (("upload", upload_peak), ("download", download_peak)):
        growth = (peak - baseline) / MB
        report.add(
            f"big: server RSS growth during {label}",
            f"{growth:8.1f} MB (peak {peak / MB:.1f} MB)",
            "< 64 MB",
            growth < 64,
        )
    return {"upload": upload_seconds, "download": download_seconds}


# -- 2. deadline burst ----------------------------------------------------------------------------
@dataclass
class Burst:
    course: str
    instructor: str
    tars: list[Path]
    copy_fsync: float
    copy_plain: float
    wall: float = 0.0
    p50: float = 0.0
    p99: float = 0.0


def local_copy(files: list[Path], dest: Path, fsync: bool) -> float:
    """Seconds to copy ``files`` into ``dest`` one by one (optionally fsyncing each)."""
    dest.mkdir()
    with stopwatch() as elapsed:
        for file in files:
            target = dest / file.name
            shutil.copyfile(file, target)
            if fsync:
                fd = os.open(target, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
    shutil.rmtree(dest)
    return elapsed()


def bench_burst(server: Server, work: Path, students: int, report: Report, run_id: str) -> Burst:
    """``students`` students each submit a different 1 MiB tar, 16 at a time."""
    course = f"burst-{run_id}"
    instructor = server.token("bench-instructor", course, "Instructor")
    upload_bytes(
        server,
        instructor,
        path("courses", course, "assignments", "burst", "releases"),
        tar_bytes({"burst.ipynb": b"{}"}),
    )
    tokens = [server.token(f"student{i:04d}", course) for i in range(students)]
    tar_dir = work / "burst-tars"
    tar_dir.mkdir()
    tars = []
    for i in range(students):
        tar = tar_dir / f"student{i:04d}.tar"
        tar.write_bytes(tar_bytes({"burst.ipynb": os.urandom(MiB)}))
        tars.append(tar)
    total_bytes = sum(t.stat().st_size for t in tars)

    def submit(i: int) -> float:
        client = server.client(tokens[i])
        start = time.perf_counter()
        with open(tars[i], "rb") as fh:
            client.upload(
                "POST",
                path("courses", course, "assignments", "burst", "submissions"),
                fh,
                tars[i].stat().st_size,
            )
        seconds = time.perf_counter() - start
        client.session.close()
        return seconds

    with ThreadPoolExecutor(THREADS) as pool, stopwatch() as elapsed:
        latencies = list(pool.map(submit, range(students)))
    wall = elapsed()

    rows = server.api(
        "GET", path("courses", course, "submissions"), instructor, params={"assignment_id": "burst"}
    ).json()["submissions"]
    if len(rows) != students:
        raise AssertionError(f"burst: {len(rows)} submissions stored, expected {students}")

    copy_fsync = local_copy(tars, work / "copy-fsync", fsync=True)
    copy_plain = local_copy(tars, work / "copy-plain", fsync=False)

    p50, p95, p99 = (percentile(latencies, p) for p in (50, 95, 99))
    report.add(
        f"burst: {students} submits of 1 MiB, {THREADS} threads",
        f"p50 {p50:.3f} s, p95 {p95:.3f} s, max {max(latencies):.3f} s",
    )
    report.add("burst: p99 submit latency", f"{p99:8.3f} s", "< 0.25 s", p99 < 0.25)
    inside = server.server_seconds("POST", f"/{course}/assignments/burst/submissions")
    report.add(
        "burst: server-side time per submit (access log)",
        f"p50 {percentile(inside, 50):.3f} s, p99 {percentile(inside, 99):.3f} s, "
        f"max {max(inside):.3f} s",
    )
    report.add(f"burst: all {students} stored (instructor list)", f"{len(rows)} rows")
    report.add("burst: local copy, fsync each file", f"{copy_fsync:8.2f} s")
    report.add("burst: local copy, no fsync", f"{copy_plain:8.2f} s")
    report.add(
        "burst: total wall time",
        f"{wall:8.2f} s ({total_bytes / MB / wall:.1f} MB/s, "
        f"{wall / copy_fsync:.2f}× the fsync copy)",
        "≤ 2× fsync copy",
        wall <= 2 * copy_fsync,
    )
    return Burst(course, instructor, tars, copy_fsync, copy_plain, wall, p50, p99)


# -- 3. collect -----------------------------------------------------------------------------------
def bench_collect(server: Server, work: Path, burst: Burst, report: Report) -> None:
    """Collect every burst submission in one request, unpacking as ``nbgrader collect`` does."""
    rows = server.api(
        "GET",
        path("courses", burst.course, "submissions"),
        burst.instructor,
        params={"assignment_id": "burst"},
    ).json()["submissions"]
    ids = sorted(r["id"] for r in rows)
    dest = work / "collected"
    client = server.client(burst.instructor)
    collected = 0
    with stopwatch() as elapsed:
        response = client.request(
            "POST",
            path("courses", burst.course, "assignments", "burst", "collection"),
            json={"submission_ids": ids},
            stream=True,
        )
        response.raw.decode_content = True
        manifest: dict[int, dict] = {}
        with response, tarfile.open(fileobj=response.raw, mode="r|") as outer:
            for name, info in iter_safe_members(outer, max_members=2 * len(ids) + 2):
                member = outer.extractfile(info)
                if member is None:
                    continue
                if str(name) == "manifest.json":
                    manifest = {m["id"]: m for m in json.loads(member.read())}
                    continue
                submission_id = int(name.stem)
                reader = HashingReader(member)
                extract_stream(reader, dest / str(submission_id))
                reader.drain()
                if reader.sha256.hexdigest() != manifest[submission_id]["sha256"]:
                    raise AssertionError(f"collect: submission {submission_id} corrupted")
                collected += 1
    seconds = elapsed()
    client.session.close()
    shutil.rmtree(dest)
    if collected != len(ids):
        raise AssertionError(f"collect: unpacked {collected} of {len(ids)} submissions")

    total = sum(r["size"] for r in rows)
    (inside,) = server.server_seconds("POST", f"/{burst.course}/assignments/burst/collection")
    report.add(
        f"collect: {collected} submissions in one request",
        f"{seconds:8.2f} s ({total / MB / seconds:.1f} MB/s; server-side {inside:.2f} s)",
    )
    report.add(
        "collect: compared with the local copy",
        f"{seconds / burst.copy_plain:8.2f}× the no-fsync copy, "
        f"{seconds / burst.copy_fsync:.2f}× the fsync copy",
        "≤ 2× no-fsync copy",
        seconds <= 2 * burst.copy_plain,
    )


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


def nbgrader_list_time(
    server: Server, work: Path, course: str, token: str, expected: int, runs: int
) -> tuple[CliTimes, CliTimes]:
    """Fastest of ``runs`` runs each of ``nbgrader list --inbound`` and of ``nbgrader --version``
    (interleaved, so that load from other jobs hits both alike)."""
    home = work / "nbgrader-home"
    (home / ".jupyter").mkdir(parents=True)
    lines = [f"c.ExchangeFactory.{k} = 'nbgrader_plugin.{v}'" for k, v in EXCHANGE_FACTORY.items()]
    lines.append(f"c.Exchange.service_url = {server.url!r}")
    (home / ".jupyter" / "nbgrader_config.py").write_text("\n".join(lines) + "\n")
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    login = [str(BIN / "lti-exchange"), "login", "--url", server.url, "--token", token]
    subprocess.run(login, env=env, cwd=home, check=True, capture_output=True)

    def run(args: list[str]) -> tuple[CliTimes, str]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            [str(BIN / "nbgrader"), *args], env=env, cwd=home, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return CliTimes(seconds, cpu), done.stdout + done.stderr

    listing, version = [], []
    for _ in range(runs):
        times, output = run(["list", "--inbound", "--course", course])
        listing.append(times)
        version.append(run(["--version"])[0])
    listed = sum(" (no feedback available)" in line for line in output.splitlines())
    if listed != expected:
        raise AssertionError(f"nbgrader list --inbound showed {listed} submissions, not {expected}")

    def best(samples: list[CliTimes]) -> CliTimes:
        return CliTimes(min(t.wall for t in samples), min(t.cpu for t in samples))

    return best(listing), best(version)


def bench_lists(
    server: Server,
    work: Path,
    assignments: int,
    students: int,
    report: Report,
    run_id: str,
    cli_runs: int,
) -> None:
    """List speed and query counts with ``assignments`` × 30 submissions in one course."""
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
    )

    cli, startup = nbgrader_list_time(server, work, course, instructor, expected, cli_runs)
    inside = server.server_seconds("GET", f"/courses/{course}/submissions")[-1]
    report.add(
        f"lists: nbgrader --version (start-up, best of {cli_runs})",
        f"{startup.wall:8.2f} s (CPU {startup.cpu:.2f} s)",
    )
    report.add(
        f"lists: nbgrader list --inbound ({expected}), total",
        f"{cli.wall:8.2f} s (CPU {cli.cpu:.2f} s; its GET submissions {inside:.2f} s server-side)",
    )
    net = cli.wall - startup.wall
    report.add(
        "lists: nbgrader list --inbound, minus start-up",
        f"{net:8.2f} s (CPU {cli.cpu - startup.cpu:+.2f} s)",
        "< 0.8 s",
        net < 0.8,
    )


# -- main -----------------------------------------------------------------------------------------
# -- S3: the same measurements against moto's S3 server ------------------------------------------
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_s3(work: Path) -> Iterator[dict[str, str]]:
    """Run moto's S3 server (its own process) with one bucket; yield the service's settings."""
    import boto3

    port = free_port()
    log = open(work / "moto.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                requests.get(endpoint, timeout=1)
                break
            except requests.RequestException:
                if time.time() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
        )
        client.create_bucket(Bucket="lti-bench")
        yield {
            **S3_CREDENTIALS,
            "AWS_ENDPOINT_URL": endpoint,
            "LTI_EXCHANGE_STORAGE_URL": "s3://lti-bench/exchange",
        }
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def run_storage(
    args: argparse.Namespace,
    work: Path,
    label: str,
    wanted: set[str],
    report: Report,
    extra_env: dict[str, str] | None = None,
) -> dict[str, float]:
    """Start a server on one storage, run the wanted measurements; the ratio inputs."""
    run_id = uuid.uuid4().hex[:6]
    data_dir = work / f"server-{label}"
    data_dir.mkdir()
    database_url = args.database_url or f"sqlite:///{data_dir / 'bench.sqlite3'}"
    server = Server.start(database_url, data_dir, args.workers, extra_env)
    numbers: dict[str, float] = {}
    report.prefix = f"[{label}] " if args.storage == "s3" else ""
    try:
        workers = len(server.worker_pids())
        print(
            f"lti-exchange at {server.url}: {workers} gunicorn workers, database "
            f"{database_url.split('://')[0]}, storage {label}, data in {data_dir}\n"
        )
        if "big" in wanted:
            big = bench_big(server, work, args.big_mb, report, run_id)
            numbers.update({f"big {k}": v for k, v in big.items()})
        if wanted & {"burst", "collect"}:
            burst = bench_burst(server, work, args.students, report, run_id)
            numbers.update(
                {"burst wall": burst.wall, "burst p50": burst.p50, "burst p99": burst.p99}
            )
            if "collect" in wanted:
                bench_collect(server, work, burst, report)
            shutil.rmtree(work / "burst-tars")
        if "lists" in wanted:
            cli_runs = 3 if args.quick else 5
            bench_lists(server, work, args.assignments, args.students, report, run_id, cli_runs)
    finally:
        server.stop()
        report.prefix = ""
    return numbers


def print_ratios(local: dict[str, float], s3: dict[str, float]) -> None:
    """The S3 and local numbers side by side (seconds; ratio = S3 / local, target ≤ 1.5)."""
    print("\nS3 / local (seconds; target: ratio ≤ 1.5)")
    print(f"{'measurement':<16} {'local':>9} {'s3':>9} {'ratio':>7}")
    for name, value in local.items():
        if name in s3 and value > 0:
            ratio = s3[name] / value
            verdict = "PASS" if ratio <= 1.5 else "FAIL"
            print(f"{name:<16} {value:9.3f} {s3[name]:9.3f} {ratio:6.2f}×  {verdict}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="", help="SQLAlchemy URL (default: SQLite)")
    parser.add_argument("--big-mb", type=int, default=None, help="big transfer size in MiB")
    parser.add_argument("--students", type=int, default=None, help="students in burst and lists")
    parser.add_argument("--assignments", type=int, default=None, help="assignments in lists")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers")
    parser.add_argument("--quick", action="store_true", help="64 MiB, 60 students, 20 assignments")
    parser.add_argument("--skip-big", action="store_true", help="skip the big transfer")
    parser.add_argument("--only", choices=("big", "burst", "collect", "lists"))
    parser.add_argument("--tmp-dir", default=None, help="where temp files go (default: $TMPDIR)")
    parser.add_argument(
        "--storage",
        choices=("local", "s3"),
        default="local",
        help="s3: run big and burst on the local directory and on S3 (moto), print the ratios",
    )
    args = parser.parse_args(argv)
    quick = {"big_mb": 64, "students": 60, "assignments": 20}
    full = {"big_mb": 512, "students": 300, "assignments": 100}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = {args.only} if args.only else {"big", "burst", "collect", "lists"}
    if args.skip_big:
        wanted.discard("big")
    if args.tmp_dir:
        tempfile.tempdir = args.tmp_dir
    report = Report()
    with tempfile.TemporaryDirectory(prefix="lti-bench-") as tmp:
        work = Path(tmp)
        if args.storage == "local":
            run_storage(args, work, "local", wanted, report)
        else:
            wanted &= {"big", "burst"}  # what the ratio compares
            local = run_storage(args, work, "local", wanted, report)
            with moto_s3(work) as s3_env:
                s3 = run_storage(args, work, "s3", wanted, report, s3_env)
            print_ratios(local, s3)
    report.summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
