"""Shared pieces of the benchmarks: the gunicorn-run server, reporting, /proc readings, S3 and
PostgreSQL scratch resources. Used by ``bench/transfers.py`` and its modules."""

from __future__ import annotations

import hashlib
import io
import math
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent
MB = 1_000_000  # throughput and memory are reported in decimal megabytes
MiB = 1024 * 1024
GiB = 1024 * MiB
THREADS = 16
TOKEN_TTL = 6 * 3600
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def path(*segments: str) -> str:
    """A URL path from segments, each percent-encoded (as the plugin's client builds them)."""
    return "/".join(quote(str(s), safe="") for s in segments)


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


SERVER_CPUS_ENV = "BENCH_SERVER_CPUS"  # set by place_server(): what the servers start on


def parse_cpus(text: str) -> set[int]:
    """``"1"``, ``"0,1"`` or ``"2-3"`` as a set of CPU numbers."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def place_server(server_cpus: str | None) -> str:
    """``--server-cpus``: the servers this bench starts run on those CPUs (gunicorn's master,
    its workers and their threads inherit them), and this process (the students' nbgrader,
    the default exchange) on the others, as in production, where students' notebooks never
    run on the exchange's machine. Returns a line saying where everything runs."""
    usable = os.sched_getaffinity(0)
    if not server_cpus:
        return f"servers and clients share CPUs {sorted(usable)}"
    cpus = parse_cpus(server_cpus)
    rest = usable - cpus
    if not cpus <= usable or not rest:
        raise SystemExit(
            f"--server-cpus {server_cpus}: name CPUs among {sorted(usable)} and leave at least "
            "one for the clients"
        )
    os.environ[SERVER_CPUS_ENV] = ",".join(map(str, sorted(cpus)))
    os.sched_setaffinity(0, rest)
    return f"servers on CPUs {sorted(cpus)}, clients on CPUs {sorted(rest)}"


def on_server_cpus() -> Callable[[], None] | None:
    """A ``preexec_fn`` that moves a server process to ``--server-cpus`` (None without)."""
    chosen = os.environ.get(SERVER_CPUS_ENV)
    if not chosen:
        return None
    cpus = parse_cpus(chosen)
    return lambda: os.sched_setaffinity(0, cpus)


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
        for name in (
            "LTI_EXCHANGE_THREADS",
            "LTI_EXCHANGE_PIN_WORKERS",
            "LTI_EXCHANGE_DB_POOL_SIZE",
        ):
            if os.environ.get(name):
                env[name] = os.environ[name]
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
                preexec_fn=on_server_cpus(),  # noqa: PLW1509 - before any thread starts there
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

    def server_seconds_all(self) -> list[float]:
        """Server-side durations of every request in the access log so far."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) in (6, 7) and parts[5].endswith("ms") and parts[5][:-2].isdigit():
                found.append(int(parts[5][:-2]) / 1000)
        return found

    def worker_pids(self) -> list[int]:
        return child_pids(self.process.pid)

    def token(self, username: str, course: str, role: str = "Learner") -> str:
        """Provision ``username`` in ``course`` with ``role`` and mint an access token."""
        if self._state is None:
            from lti_exchange.app_objects import build_app_objects
            from lti_exchange.config import load_settings

            self._state = build_app_objects(load_settings(self.env))
        return provisioned_token(self._state, username, course, role)

    def client(self, token: str) -> Any:
        """The plugin's HTTP client for this token (its own connection; ``--raw`` only)."""
        from nbgrader_plugin.client import ExchangeClient
        from nbgrader_plugin.tokens import TokenEntry

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


def provisioned_token(state: Any, username: str, course: str, role: str) -> str:
    """Provision ``username`` in ``course`` (organisation ``bench-org``) with ``role`` through
    the service's objects ``state``, and mint their access token (the tests' own helper)."""
    from tests.factories import issue_access_token

    return issue_access_token(state, username, course, role, org="bench-org", ttl=TOKEN_TTL)


# -- server memory --------------------------------------------------------------------------------
def child_pids(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    except OSError:  # kernel without CONFIG_PROC_CHILDREN: scan /proc
        return [child for child, stat in processes() if _parent(stat) == pid]


def _parent(stat: str) -> int:
    """The parent pid in a ``/proc/<pid>/stat`` line."""
    return int(stat.rsplit(")", 1)[1].split()[1])


def processes() -> Iterator[tuple[int, str]]:
    """Each process on the machine: its pid and its ``/proc/<pid>/stat`` line."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "stat").read_text()
            except OSError:  # it ended meanwhile
                continue


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
    return _rss(pid) + sum(_rss(child) for child in child_pids(pid))


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
    """POST a tar body through the service API (a fresh connection, as a student's would be)."""
    response = requests.post(
        f"{server.url}/api/v1/{url_path}",
        data=data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-tar"},
        timeout=300,
    )
    response.raise_for_status()
    return response.json()


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


# -- S3: moto's S3 server on loopback --------------------------------------------------------
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def s3_client(endpoint: str, settings: dict[str, str]) -> Any:
    """A boto3 S3 client for ``endpoint`` with the ``AWS_*`` values in ``settings``."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        region_name=settings["AWS_DEFAULT_REGION"],
    )


@contextmanager
def moto_s3(work: Path) -> Iterator[dict[str, str]]:
    """Run moto's S3 server (its own process) with one bucket; yield the service's settings."""

    port = free_port()
    log = open(work / "moto.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=on_server_cpus(),  # noqa: PLW1509 - before any thread starts there
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
        s3_client(endpoint, S3_CREDENTIALS).create_bucket(Bucket="lti-bench")
        yield {
            **S3_CREDENTIALS,
            "AWS_ENDPOINT_URL": endpoint,
            "LTI_EXCHANGE_STORAGE_URL": "s3://lti-bench/exchange",
        }
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@contextmanager
def external_s3(endpoint: str, run_id: str) -> Iterator[dict[str, str]]:
    """An S3 server already running at ``endpoint`` (credentials and region from the standard
    ``AWS_*`` variables): a fresh bucket for this run, emptied and removed at the end."""

    missing = [n for n in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not os.environ.get(n)]
    if missing:
        raise SystemExit(f"--s3-endpoint needs {' and '.join(missing)} in the environment")
    settings = {
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    bucket = f"lti-bench-{run_id}".lower()
    client = s3_client(endpoint, settings)
    client.create_bucket(Bucket=bucket)
    try:
        yield {
            **settings,
            "AWS_ENDPOINT_URL": endpoint,
            "LTI_EXCHANGE_STORAGE_URL": f"s3://{bucket}/exchange",
        }
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket)


# -- server CPU -----------------------------------------------------------------------------------
def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` (all its threads), from /proc; 0 if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0.0
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state)
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def context_switches(pid: int) -> tuple[float, float]:
    """Voluntary and involuntary context switches of every thread of ``pid`` so far, from /proc
    (a thread waiting for the GIL, a lock or I/O switches voluntarily; one preempted, not);
    0 if gone. Same shape as ``cpu_split``, so ``cpu_used`` subtracts two readings."""
    voluntary = involuntary = 0
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0, 0.0
    for thread in threads:
        try:
            status = Path(f"/proc/{pid}/task/{thread}/status").read_text()
        except OSError:  # the thread ended
            continue
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                voluntary += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                involuntary += int(line.split()[1])
    return float(voluntary), float(involuntary)


def workers_cpu(server: Server) -> dict[int, tuple[float, float]]:
    """User and system CPU seconds of each gunicorn worker, by pid."""
    return {pid: cpu_split(pid) for pid in server.worker_pids()}


def postgres_cpu() -> dict[int, tuple[float, float]]:
    """User and system CPU seconds of each PostgreSQL process on this machine (backends, WAL
    writer, checkpointer …), by pid: the database's share of a burst's CPU."""
    return {
        pid: cpu_split(pid)
        for pid, stat in processes()
        if stat[stat.index("(") + 1 :].startswith("postgres")
    }


def cpu_used(
    before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]]
) -> tuple[float, float]:
    """Worker user and system CPU spent between two ``workers_cpu`` readings (a worker that
    was replaced in between counts from zero)."""
    user = sum(value[0] - before.get(pid, (0.0, 0.0))[0] for pid, value in after.items())
    system = sum(value[1] - before.get(pid, (0.0, 0.0))[1] for pid, value in after.items())
    return user, system


def access_log_count(server: Server) -> int:
    """Requests in the access log so far."""
    return len(server.server_seconds_all())


# -- PostgreSQL: a scratch database -------------------------------------------------------------
@contextmanager
def scratch_postgres(base_url: str) -> Iterator[str]:
    """Create an empty database on the server at ``base_url`` (SQLAlchemy URL without the
    database name); yield its URL; drop it afterwards."""
    import psycopg

    name = f"lte_bench_{uuid.uuid4().hex[:8]}"
    rest = base_url.split("://", 1)[1].rstrip("/")
    conninfo = f"postgresql://{rest}/postgres"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base_url.rstrip('/')}/{name}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
