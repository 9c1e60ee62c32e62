"""Where one request's server CPU goes: the HTTP stack alone, then the service, one at a time.

Two gunicorn servers with the same front door (``FRONT_DOOR``: worker class, header limits,
access log), one worker each: ``bench/floor_app.py`` (reads bodies, sends a file, or stores a
blob with the service's own storage code, and nothing else) and the service itself. Requests go
one after another, each on a new connection (as each nbgrader operation opens its own), and the
worker's user and system CPU (``/proc``) is divided by the number of requests.

The difference between a floor line and the service line below it is the service's own work:
Flask, the token and the enrolment check, SQL, the archive check. Compare it with issue 12's
target (≤ 3 ms of server CPU per 1 MB request, averaged over fetch and submit).

    .venv/bin/python bench/stack_floor.py            # 300 requests of each kind
    .venv/bin/python bench/stack_floor.py --requests 100 --tmp-dir /var/tmp
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import BIN, ROOT, MiB, Server, child_pids, cpu_split, cpu_used, free_port, tar_bytes

HERE = Path(__file__).resolve().parent
Request = tuple[str, str, bytes | None, dict[str, str]]
FLOOR_FETCH = "stack: GET 1 MiB file (sendfile)"
FLOOR_SUBMIT = "stack + blob store: POST 1 MiB kept durably"
SERVICE_FETCH = "service: fetch 1 MiB (GET …/archive)"
SERVICE_SUBMIT = "service: submit 1 MiB (POST …/submissions)"


def _always(request: Request) -> Callable[[int], Request]:
    return lambda _index: request


def floor_server(work: Path) -> tuple[subprocess.Popen, int]:
    """gunicorn with the service's front door on ``floor_app``; the process and its port."""
    port = free_port()
    config = work / "floor.conf.py"
    config.write_text(
        "from lti_exchange.serving.gunicorn_app import FRONT_DOOR\n"
        "globals().update(FRONT_DOOR)\n"
        f"bind = '127.0.0.1:{port}'\nworkers = 1\nthreads = 4\nloglevel = 'warning'\n"
    )
    (work / "blob.bin").write_bytes(os.urandom(MiB))
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{HERE}", "FLOOR_DIR": str(work)}
    log = open(work / "floor.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", str(config), "floor_app:app"],
        env=env,
        cwd=HERE,
        stdout=log,
        stderr=subprocess.STDOUT,
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
    port: int, master: int, requests: Callable[[int], Request], count: int
) -> tuple[float, float]:
    """User and system milliseconds of the workers' CPU per request, ``count`` requests."""
    pids = child_pids(master)
    send(port, requests(0))  # warm: the first request of a kind pays one-off costs
    time.sleep(0.2)
    before = {pid: cpu_split(pid) for pid in pids}
    for index in range(count):
        send(port, requests(index))
    user, system = cpu_used(before, {pid: cpu_split(pid) for pid in pids})
    return user * 1000 / count, system * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests of each kind")
    parser.add_argument("--tmp-dir", default=None, help="where data goes (a real disk)")
    args = parser.parse_args()
    count = args.requests
    rows: list[tuple[str, tuple[float, float]]] = []
    upload = os.urandom(MiB)

    with tempfile.TemporaryDirectory(prefix="stack-floor-", dir=args.tmp_dir) as tmp:
        work = Path(tmp)
        (work / "floor").mkdir()
        process, port = floor_server(work / "floor")
        try:
            for label, request in (
                ("stack: GET, small JSON answer", ("GET", "/empty", None, {})),
                ("stack + bare Flask: GET, small JSON answer", ("GET", "/flask", None, {})),
                ("stack: POST 1 MiB, read and dropped", ("POST", "/read", upload, {})),
                (FLOOR_FETCH, ("GET", "/file", None, {})),
                (FLOOR_SUBMIT, ("POST", "/store", upload, {})),
            ):
                same = _always(request)
                rows.append((label, cpu_per_request(port, process.pid, same, count)))
        finally:
            process.terminate()
            process.wait(timeout=30)

        data = work / "service"
        data.mkdir()
        server = Server.start(f"sqlite:///{data}/db.sqlite", data, 1)
        try:
            port = int(server.url.rsplit(":", 1)[1])
            instructor = server.token("teacher", "floor", "Instructor")
            release = tar_bytes({"notebook.ipynb": b"{}", "data.bin": os.urandom(MiB)})
            tar = {"Content-Type": "application/x-tar"}
            path = "/api/v1/courses/floor/assignments/ps1/releases"
            send(port, ("POST", path, release, {"Authorization": f"Bearer {instructor}", **tar}))
            tokens = [server.token(f"s{i}", "floor", "Learner") for i in range(count + 1)]
            submissions = [
                tar_bytes({"notebook.ipynb": b"{}", "data.bin": os.urandom(MiB)})
                for _ in range(count + 1)
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
                rows.append((label, cpu_per_request(port, server.process.pid, requests, count)))
        finally:
            server.stop()

    print(f"Server CPU per request, one worker, {count} requests of each kind, one at a time")
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
