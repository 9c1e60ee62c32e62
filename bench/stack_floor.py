"""Where one request's server CPU goes: the HTTP stack alone, then the service, one at a time.

Two gunicorn servers with the same front door (``FRONT_DOOR``: worker class, header limits,
access log) and the same workers and threads (one worker by default): ``bench/floor_app.py``
(reads bodies, sends a file, or stores a blob with the service's own storage code, and nothing
else) and the service itself. Requests go one after another (or ``--concurrency`` at a time),
each on a new connection (as each nbgrader operation opens its own), and the workers' user and
system CPU (``/proc``) is divided by the number of requests. ``LTI_EXCHANGE_PIN_WORKERS`` and
``LTI_EXCHANGE_THREADS`` in the environment reach both servers (A/B runs).

The difference between a floor line and the service line below it is the service's own work:
Flask, the token and the enrolment check, SQL, the archive check. Compare it with issue 12's
target (≤ 3 ms of server CPU per 1 MB request, averaged over fetch and submit).

    .venv/bin/python bench/stack_floor.py            # 300 requests of each kind
    .venv/bin/python bench/stack_floor.py --requests 100 --tmp-dir /var/tmp
    .venv/bin/python bench/stack_floor.py --workers 2 --concurrency 16   # under load
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import (
    BIN,
    ROOT,
    MiB,
    Server,
    child_pids,
    cpu_split,
    cpu_used,
    free_port,
    on_server_cpus,
    place_server,
    tar_bytes,
)

from lti_exchange.config import DEFAULT_THREADS

HERE = Path(__file__).resolve().parent
Request = tuple[str, str, bytes | None, dict[str, str]]
FLOOR_FETCH = "stack: GET 1 MiB file (sendfile)"
FLOOR_SUBMIT = "stack + blob store: POST 1 MiB kept durably"
SERVICE_FETCH = "service: fetch 1 MiB (GET …/archive)"
SERVICE_SUBMIT = "service: submit 1 MiB (POST …/submissions)"


def _always(request: Request) -> Callable[[int], Request]:
    return lambda _index: request


PASSED_ON = ("LTI_EXCHANGE_PIN_WORKERS", "LTI_EXCHANGE_THREADS")


def floor_server(
    work: Path, workers: int = 1, notebooks: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, int]:
    """gunicorn with the service's front door on ``floor_app``; the process and its port
    (``notebooks``: the release's, for the floor app's API answers)."""
    port = free_port()
    config = work / "floor.conf.py"
    threads = os.environ.get("LTI_EXCHANGE_THREADS") or str(DEFAULT_THREADS)  # as the service
    config.write_text(
        "from lti_exchange.serving.cpu_pinning import pinning_hooks\n"
        "from lti_exchange.serving.gunicorn_app import FRONT_DOOR\n"
        "globals().update(FRONT_DOOR)\n"
        "globals().update(pinning_hooks())\n"
        f"bind = '127.0.0.1:{port}'\nworkers = {workers}\nthreads = {threads}\n"
        "loglevel = 'warning'\n"
    )
    (work / "blob.bin").write_bytes(os.urandom(MiB))
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "PYTHONPATH": f"{ROOT}:{HERE}",
        "FLOOR_DIR": str(work),
        "FLOOR_NOTEBOOKS": ",".join(notebooks),
    }
    env.update({name: os.environ[name] for name in PASSED_ON if os.environ.get(name)})
    with open(work / "floor.log", "wb") as log:  # the server keeps its own copy
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", str(config), "floor_app:app"],
            env=env,
            cwd=HERE,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=on_server_cpus(),  # noqa: PLW1509 - before any thread starts there
        )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            send(port, ("GET", "/empty", None, {}))
            return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the floor server did not start: {(work / 'floor.log').read_text()}")


def send(port: int, request: Request) -> None:
    method, path, body, headers = request
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}")
    finally:
        connection.close()


def cpu_per_request(
    port: int, master: int, requests: Callable[[int], Request], count: int, concurrency: int = 1
) -> tuple[float, float]:
    """User and system milliseconds of the workers' CPU per request, ``count`` requests sent
    ``concurrency`` at a time."""
    pids = child_pids(master)
    for index in range(count, count + len(pids)):  # warm: a kind's first request pays one-offs
        send(port, requests(index))
    time.sleep(0.2)
    before = {pid: cpu_split(pid) for pid in pids}
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda index: send(port, requests(index)), range(count)))
    user, system = cpu_used(before, {pid: cpu_split(pid) for pid in pids})
    return user * 1000 / count, system * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests of each kind")
    parser.add_argument("--tmp-dir", default=None, help="where data goes (a real disk)")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers (both servers)")
    parser.add_argument("--concurrency", type=int, default=1, help="requests sent at a time")
    parser.add_argument(
        "--server-cpus",
        default=None,
        help="run both servers on these CPUs (e.g. 1), the clients on the others",
    )
    args = parser.parse_args()
    placement = place_server(args.server_cpus)
    count, workers, concurrency = args.requests, args.workers, args.concurrency
    rows: list[tuple[str, tuple[float, float]]] = []
    upload = os.urandom(MiB)

    with tempfile.TemporaryDirectory(prefix="stack-floor-", dir=args.tmp_dir) as tmp:
        work = Path(tmp)
        (work / "floor").mkdir()
        process, port = floor_server(work / "floor", workers)
        try:
            for label, request in (
                ("stack: GET, small JSON answer", ("GET", "/empty", None, {})),
                ("stack + bare Flask: GET, small JSON answer", ("GET", "/flask", None, {})),
                ("stack: POST 1 MiB, read and dropped", ("POST", "/read", upload, {})),
                (FLOOR_FETCH, ("GET", "/file", None, {})),
                (FLOOR_SUBMIT, ("POST", "/store", upload, {})),
            ):
                same = _always(request)
                usage = cpu_per_request(port, process.pid, same, count, concurrency)
                rows.append((label, usage))
        finally:
            process.terminate()
            process.wait(timeout=30)

        data = work / "service"
        data.mkdir()
        server = Server.start(f"sqlite:///{data}/db.sqlite", data, workers)
        try:
            port = int(server.url.rsplit(":", 1)[1])
            instructor = server.token("teacher", "floor", "Instructor")
            release = tar_bytes({"notebook.ipynb": b"{}", "data.bin": os.urandom(MiB)})
            tar = {"Content-Type": "application/x-tar"}
            path = "/api/v1/courses/floor/assignments/ps1/releases"
            send(port, ("POST", path, release, {"Authorization": f"Bearer {instructor}", **tar}))
            users = count + workers  # the warm-up requests (one per worker) have their own
            tokens = [server.token(f"s{i}", "floor", "Learner") for i in range(users)]
            submissions = [
                tar_bytes({"notebook.ipynb": b"{}", "data.bin": os.urandom(MiB)})
                for _ in range(users)
            ]

            def me(i: int) -> Request:
                return ("GET", "/api/v1/me", None, {"Authorization": f"Bearer {tokens[i]}"})

            def fetch(i: int) -> Request:
                path = "/api/v1/courses/floor/assignments/ps1/archive"
                return ("GET", path, None, {"Authorization": f"Bearer {tokens[i]}"})

            def submit(i: int) -> Request:
                path = "/api/v1/courses/floor/assignments/ps1/submissions"
                headers = {"Authorization": f"Bearer {tokens[i]}", **tar}
                return ("POST", path, submissions[i], headers)

            for label, requests in (
                ("service: GET /me", me),
                (SERVICE_FETCH, fetch),
                (SERVICE_SUBMIT, submit),
            ):
                usage = cpu_per_request(port, server.process.pid, requests, count, concurrency)
                rows.append((label, usage))
        finally:
            server.stop()

    pace = "one at a time" if concurrency == 1 else f"{concurrency} at a time"
    pinning = os.environ.get("LTI_EXCHANGE_PIN_WORKERS") or "off"
    print(
        f"Server CPU per request, {workers} worker(s), {count} requests of each kind, {pace} "
        f"(LTI_EXCHANGE_PIN_WORKERS={pinning}); {placement}"
    )
    print(f"{'request':<48} {'user ms':>8} {'system ms':>10} {'total ms':>9}")
    for label, (user, system) in rows:
        print(f"{label:<48} {user:8.2f} {system:10.2f} {user + system:9.2f}")
    totals = {label: user + system for label, (user, system) in rows}
    floor = (totals[FLOOR_FETCH] + totals[FLOOR_SUBMIT]) / 2
    ours = (totals[SERVICE_FETCH] + totals[SERVICE_SUBMIT]) / 2
    print(
        f"mean of fetch and submit: floor {floor:.2f} ms, service {ours:.2f} ms "
        f"(the service's own work {ours - floor:.2f} ms); target ≤ 3 ms"
    )


if __name__ == "__main__":
    main()
