"""The service's own CPU per request, without HTTP: fetch and submit through the WSGI app.

One thread calls the app's WSGI entry directly (no gunicorn, no sockets, no other threads), so
what is left is what the service itself does per request: its hot routes (or Flask), the token,
SQL, the archive check, hashing and writing the blob. Each request's thread CPU
(``time.thread_time``) is measured; the lowest and highest fifth are dropped and the rest
averaged. The result moves far less between runs than a burst's server CPU (which also holds
gunicorn, the kernel's sockets and the threads handing the GIL to each other), so it is the
number for A/B runs of a change to the service.

A download is answered with ``wsgi.file_wrapper`` as gunicorn answers it (``sendfile``: the
file is not read in Python), so a fetch here is the service's work before the bytes move.

    .venv/bin/python bench/in_process.py                        # SQLite, 300 students
    .venv/bin/python bench/in_process.py --backend postgresql   # a scratch PostgreSQL database
    .venv/bin/python bench/in_process.py --profile out.pstats   # also cProfile (thread CPU)
    .venv/bin/python bench/in_process.py --setup-only           # no requests (callgrind baseline)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import BIN, MiB, provisioned_token, scratch_postgres, tar_bytes

NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


class _SentFile:
    """``wsgi.file_wrapper`` as gunicorn's ``sendfile`` path: the file is not read here."""

    def __init__(self, handle: Any, _block_size: int = 8192) -> None:
        self.handle = handle

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        self.handle.close()


class InProcess:
    """The app in this process, with a course, an instructor and a released assignment."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.env = {
            "LTI_EXCHANGE_DATA_DIR": str(data_dir),
            "LTI_EXCHANGE_DATABASE_URL": database_url,
            "LTI_EXCHANGE_LOG_LEVEL": "WARNING",
            "LTI_EXCHANGE_BIND": "127.0.0.1:9",
            "LTI_EXCHANGE_EXPOSE_QUERY_COUNT": "true",
        }
        os.environ.update(self.env)
        upgrade = [str(BIN / "lti-exchange"), "db", "upgrade"]
        subprocess.run(upgrade, check=True, capture_output=True)
        from lti_exchange import create_app
        from lti_exchange.app_objects import build_app_objects
        from lti_exchange.config import load_settings

        self.app = create_app()
        self.state = build_app_objects(load_settings(self.env))

    def token(self, username: str, role: str = "Learner") -> str:
        return provisioned_token(self.state, username, "c1", role)

    def call(self, method: str, url_path: str, token: str, body: bytes = b"") -> tuple[int, float]:
        """Status and thread CPU seconds of one request (the environ is built before timing)."""
        from werkzeug.test import EnvironBuilder

        environ = EnvironBuilder(
            path="/api/v1/" + url_path,
            method=method,
            headers={"Authorization": f"Bearer {token}"},
            input_stream=io.BytesIO(body) if body else None,
            content_length=len(body) if body else None,
            content_type="application/x-tar" if body else None,
        ).get_environ()
        environ["wsgi.file_wrapper"] = _SentFile
        status: list[str] = []

        def start_response(line: str, _headers: Any, _exc: Any = None) -> None:
            status.append(line)

        start = time.thread_time()
        answer = self.app(environ, start_response)
        for _ in answer:
            pass
        if hasattr(answer, "close"):
            answer.close()
        return int(status[0].split()[0]), time.thread_time() - start


def trimmed_mean(values: list[float]) -> float:
    """The mean without the lowest and highest fifth (other work on the machine)."""
    cut = len(values) // 5
    return statistics.mean(sorted(values)[cut : len(values) - cut] or values)


def measure(
    service: InProcess, students: int, profile: str | None, requests: bool = True
) -> dict[str, float]:
    teacher = service.token("teacher", "Instructor")
    release = tar_bytes({"ps1.ipynb": NOTEBOOK, "data.bin": os.urandom(MiB)})
    status, _ = service.call("POST", "courses/c1/assignments/ps1/releases", teacher, release)
    assert status == 201, status
    tokens = [service.token(f"s{i}") for i in range(students)]
    bodies = [tar_bytes({"ps1.ipynb": NOTEBOOK, "data.bin": os.urandom(MiB)}) for _ in tokens]
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
    fetches, submits = [], []
    for token, body in zip(tokens, bodies, strict=True) if requests else ():
        status, seconds = service.call("GET", "courses/c1/assignments/ps1/archive", token)
        assert status == 200, status
        fetches.append(seconds)
        status, seconds = service.call(
            "POST", "courses/c1/assignments/ps1/submissions", token, body
        )
        assert status == 201, status
        submits.append(seconds)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    if not requests:
        return {"fetch": 0.0, "submit": 0.0, "mean": 0.0}
    fetch, submit = trimmed_mean(fetches), trimmed_mean(submits)
    return {"fetch": fetch, "submit": submit, "mean": (fetch + submit) / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--profile", metavar="FILE", help="also write a cProfile of the requests")
    parser.add_argument("--tmp-dir", help="where the data directory goes (default: $TMPDIR)")
    parser.add_argument(
        "--setup-only",
        action="store_true",
        help="everything but the requests (the baseline of an instruction count)",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=args.tmp_dir)))
        if args.backend == "postgresql":
            url = stack.enter_context(scratch_postgres(args.postgres_url))
        else:
            url = f"sqlite:///{data_dir / 'bench.sqlite3'}"
        service = InProcess(data_dir, url)
        numbers = measure(service, args.students, args.profile, not args.setup_only)
    if args.setup_only:
        print(f"[{args.backend}] set up for {args.students} students; no requests sent")
        return
    print(
        f"[{args.backend}] service CPU per request, in-process, one at a time "
        f"({args.students} students, 1 MiB each): fetch {numbers['fetch'] * 1000:.3f} ms, "
        f"submit {numbers['submit'] * 1000:.3f} ms, mean {numbers['mean'] * 1000:.3f} ms"
    )


if __name__ == "__main__":
    main()
