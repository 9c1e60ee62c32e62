"""The front door (gunicorn as configured by ``config/gunicorn.conf.py``): bounded request
heads, slow clients that hold no thread, and an access log with the raw encoded path and no
query string."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import start_server, stop_server
from tests.security.conftest import limit_memory
from tests.support import make_tar

pytestmark = pytest.mark.one_backend

TRICKLERS = 300  # 2 workers x 4 threads = 8 threads; stock gthread stalls at 8
IDLE = 2  # slow_server's LTI_EXCHANGE_IDLE_TIMEOUT: seconds a body or an answer may stand still


def raw_request(url: str, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection; the first bytes of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        return sock.recv(4096)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


CLOSE_HEADER = re.compile(rb"(?i)\r\nconnection: *close\r\n")  # in an answer's head


# --- bounded heads ----------------------------------------------------------------------------


def test_an_oversized_request_line_is_refused(live_server):
    answer = raw_request(
        live_server.url, b"GET /healthz?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert 400 <= status_of(answer) < 500, answer[:200]


def test_an_oversized_header_is_refused(live_server):
    answer = raw_request(
        live_server.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    )
    assert 400 <= status_of(answer) < 500, answer[:200]


def test_too_many_headers_are_refused(live_server):
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(60))
    answer = raw_request(
        live_server.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"
    )
    assert 400 <= status_of(answer) < 500, answer[:200]


def test_a_normal_request_still_works(live_server):
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 4000) for i in range(10))
    answer = raw_request(
        live_server.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"
    )
    assert status_of(answer) == 200, answer[:200]


# --- slow clients -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_server(database_url, tmp_path_factory):
    server = start_server(
        database_url,
        tmp_path_factory.mktemp("front-door"),
        extra_env={
            "LTI_EXCHANGE_HEADER_TIMEOUT": "4",
            "LTI_EXCHANGE_IDLE_TIMEOUT": str(IDLE),
            "LTI_EXCHANGE_THREADS": "4",
            "MALLOC_ARENA_MAX": "2",
        },
        preexec_fn=limit_memory,  # a head that grows without bound fails instead of swapping
    )
    yield server
    stop_server(server)


class Tricklers:
    """Many connections that each send an unfinished request head, then a header line every
    half second: fresh connections, kept-alive ones (after one full request) and pipelined ones
    (a full request and half of the next)."""

    def __init__(self, url: str, count: int) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sockets: list[socket.socket] = []
        self.answers: list[bytes] = []
        for i in range(count):
            sock = socket.create_connection((host, int(port)), timeout=30)
            kind = i % 3
            if kind == 1:  # kept alive: one full request first
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert b" 200 " in sock.recv(65536)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            elif kind == 2:  # pipelined: a full request and the start of the next
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n")
            else:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            self.sockets.append(sock)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.wait(0.5):
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow: 1\r\n")

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


def test_trickling_clients_do_not_starve_healthz(slow_server):
    tricklers = Tricklers(slow_server.url, TRICKLERS)
    try:
        for _ in range(10):
            answer = requests.get(slow_server.url + "/healthz", timeout=3)
            assert answer.status_code == 200
        api = requests.get(slow_server.url + "/api/v1/me", timeout=3)
        assert api.status_code == 401
    finally:
        tricklers.close()


def test_a_head_that_never_ends_gets_408_and_is_closed(slow_server):
    tricklers = Tricklers(slow_server.url, 6)
    try:
        for sock in tricklers.sockets:
            received = b""
            while b"HTTP/1.1 408 " not in received:  # the head deadline (4 s here) passes
                chunk = sock.recv(65536)
                assert chunk, received  # closed without the 408
                received += chunk
            assert b"took too long" in received
            if received.count(b"HTTP/1.1 ") == 2:  # pipelined: the first request was answered
                assert received.startswith(b"HTTP/1.1 200 ")
    finally:
        tricklers.close()


def test_connections_that_leave_before_their_head_ends_are_forgotten(slow_server):
    """Connections leave without a full head: at once, after half a head, or after one
    kept-alive request; more of each kind than every worker's ``worker_connections`` together
    (2 x 250). A worker that kept counting them would stop accepting."""
    host, port = slow_server.url.removeprefix("http://").split(":")
    for i in range(1800):
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            if i % 3 == 1:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            elif i % 3 == 2:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert b" 200 " in sock.recv(65536)
    for _ in range(4):
        assert requests.get(slow_server.url + "/healthz", timeout=5).status_code == 200


# --- closing: the client's own close is awaited as an event, not inside the event loop --------
CLOSE_ASKED = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it shuts its side."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def workers_sockets(server) -> int:
    master = server.process.pid
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return sum(len(socket_inodes(int(worker))) for worker in workers)


def test_clients_that_never_close_do_not_stall_the_workers(slow_server):
    # Each asks the server to close after its answer and then keeps its own side open. gthread
    # waited for each such client's close inside the event loop, up to 2 s each: 3 of them
    # froze a worker for 4 s. These 12 would freeze both workers for 12 s.
    host, port = slow_server.url.removeprefix("http://").split(":")
    holders = [socket.create_connection((host, int(port)), timeout=30) for _ in range(12)]
    try:
        for sock in holders:
            sock.sendall(CLOSE_ASKED)
        for _ in range(5):
            assert requests.get(slow_server.url + "/healthz", timeout=3).status_code == 200
        for sock in holders:  # each answer whole, then the server's end of the stream
            answer = read_to_end(sock)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            head, _, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            assert length and len(body) == int(length[1]), answer
    finally:
        for sock in holders:
            sock.close()


def settled_sockets(server) -> int:
    """The workers' socket count once earlier tests' connections are done changing it."""
    deadline = time.monotonic() + 10
    count = workers_sockets(server)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now, count = count, workers_sockets(server)
        if now == count:
            break
    return count


def test_a_closed_connection_is_let_go_when_the_client_never_closes(slow_server):
    host, port = slow_server.url.removeprefix("http://").split(":")
    baseline = settled_sockets(slow_server)
    holders = [socket.create_connection((host, int(port)), timeout=30) for _ in range(20)]
    try:
        for sock in holders:
            sock.sendall(CLOSE_ASKED)
            assert read_to_end(sock).startswith(b"HTTP/1.1 200 ")
        assert workers_sockets(slow_server) >= baseline + len(holders)  # waiting for the clients
        deadline = time.monotonic() + 15  # 2 s of lingering, then closed by the workers
        while workers_sockets(slow_server) > baseline and time.monotonic() < deadline:
            time.sleep(0.2)
        assert workers_sockets(slow_server) <= baseline
    finally:
        for sock in holders:
            sock.close()
    assert requests.get(slow_server.url + "/healthz", timeout=3).status_code == 200


def test_what_a_closing_client_still_sends_is_dropped_before_the_answer_is_cut(slow_server):
    # A body the app did not read, still arriving after the answer: the server reads and drops
    # it while it waits, so the kernel has no unread bytes to answer with a reset.
    host, port = slow_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: 40000\r\n\r\n")  # fmt: skip
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        sock.sendall(b"x" * 40000)
        answer += read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 405 "), answer


# --- clients that stop half-way: the idle limit frees the thread ------------------------------


def read_answer(sock: socket.socket) -> tuple[int, bytes, bytes]:
    """One answer's status, body (its ``Content-Length``) and head, without waiting for a
    close."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)[1])  # type: ignore[index]
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, received
        body += chunk
    return status_of(head), body, head


def released(server, course: str, files: dict[str, bytes]) -> tuple[str, str]:
    """A course with assignment ps1 released; its teacher's and a student's tokens."""
    teacher = server.issue_token("teacher", course, "Instructor")
    student = server.issue_token("student", course)
    answer = server.api(
        "POST",
        f"courses/{course}/assignments/ps1/releases",
        teacher,
        data=make_tar(files),
        headers={"Content-Type": "application/x-tar"},
    )
    assert answer.status_code == 201, answer.text
    return teacher, student


def submit_head(course: str, token: str, framing: str) -> bytes:
    """The head of a submission to ps1 whose body is framed by ``framing`` (a header line)."""
    return (
        f"POST /api/v1/courses/{course}/assignments/ps1/submissions HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/x-tar\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


def test_uploads_that_stall_free_their_thread_and_store_nothing(slow_server, course):
    _teacher, student = released(slow_server, course, {"ps1.ipynb": b"{}"})
    blobs = slow_server.blob_count()
    host, port = slow_server.url.removeprefix("http://").split(":")
    head = submit_head(course, student, "Content-Length: 100000")
    stalled = [socket.create_connection((host, int(port)), timeout=30) for _ in range(10)]
    try:
        for sock in stalled:  # more than the 8 threads: a bit of each body, then nothing
            sock.sendall(head + bytes(512))
        # gthread waited on each forever: every thread held, /healthz never answered.
        assert requests.get(slow_server.url + "/healthz", timeout=IDLE * 5).status_code == 200
        for sock in stalled:
            status, body, head = read_answer(sock)
            assert status == 408, body
            assert json.loads(body)["error"]["code"] == "upload_stalled"
            # The rest of the body may still come: the answer says so and the server closes
            # (gunicorn used to drop the app's Connection: close and say keep-alive).
            assert CLOSE_HEADER.search(head), head
            assert sock.recv(65536) == b""
    finally:
        for sock in stalled:
            sock.close()
    assert slow_server.blob_count() == blobs
    deadline = time.monotonic() + 10
    while slow_server.partial_count() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert slow_server.partial_count() == 0


def test_a_body_that_cannot_be_read_to_its_end_closes_the_connection(slow_server, course):
    _teacher, student = released(slow_server, course, {"ps1.ipynb": b"{}"})
    host, port = slow_server.url.removeprefix("http://").split(":")
    head = submit_head(course, student, "Transfer-Encoding: chunked")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + b"zz\r\n" + bytes(100))  # not a chunk size: the rest is unknown
        status, body, answer_head = read_answer(sock)
        assert status == 400, body
        assert json.loads(body)["error"]["code"] == "upload_incomplete"
        assert CLOSE_HEADER.search(answer_head), answer_head
        assert sock.recv(65536) == b""


def test_an_answer_to_a_whole_request_keeps_the_connection(slow_server):
    host, port = slow_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\n\r\n")  # no token: 401
        status, body, answer_head = read_answer(sock)
        assert status == 401, body
        assert not CLOSE_HEADER.search(answer_head), answer_head
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, body, _head = read_answer(sock)
        assert status == 200, body


def test_downloads_nobody_reads_free_their_thread(slow_server, course):
    # Larger than what the kernel buffers for one connection, so the sender has to wait.
    _teacher, student = released(
        slow_server, course, {"ps1.ipynb": b"{}", "data.bin": os.urandom(24 * 1024 * 1024)}
    )
    host, port = slow_server.url.removeprefix("http://").split(":")
    request = (
        f"GET /api/v1/courses/{course}/assignments/ps1/archive HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {student}\r\n\r\n"
    ).encode()
    readers = []
    for _ in range(10):  # more than the 8 threads; none of them reads its answer
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(request)
        readers.append(sock)
    try:
        assert requests.get(slow_server.url + "/healthz", timeout=IDLE * 5).status_code == 200
        fetched = slow_server.api("GET", f"courses/{course}/assignments/ps1/archive", student)
        assert fetched.status_code == 200 and len(fetched.content) > 24 * 1024 * 1024
    finally:
        for sock in readers:
            sock.close()


def test_a_bad_idle_limit_stops_the_start_with_its_name():
    env = {"PATH": os.environ["PATH"], "LTI_EXCHANGE_IDLE_TIMEOUT": "soon"}
    done = subprocess.run(
        [sys.executable, "-c", "import lti_exchange.serving.head_buffering"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "LTI_EXCHANGE_IDLE_TIMEOUT must be a positive number of seconds, got 'soon'" in (
        done.stderr
    )


# --- access log -------------------------------------------------------------------------------


def test_access_log_has_the_raw_encoded_path_and_no_query(live_server):
    marker = "front-door-%2e%2E-%41%20x"
    target = f"/api/v1/{marker}/%2e%2e/me?access_token=s3cr3t-query&x=1"
    # A raw socket: HTTP clients re-encode paths (requests turns %2e into ".")
    answer = raw_request(live_server.url, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert 400 <= status_of(answer) < 500, answer[:200]
    requests.get(live_server.url + "/healthz", timeout=30)  # flushes the line before it
    log = live_server.log_path.read_text(errors="replace")
    lines = [line for line in log.splitlines() if marker in line]
    assert lines, log[-3000:]
    line = lines[-1]
    assert f" GET /api/v1/{marker}/%2e%2e/me 40" in line, line
    assert "s3cr3t" not in log and "access_token" not in log
    assert "front-door-..-A x" not in log  # never the decoded path


# --- wake-ups ---------------------------------------------------------------------------------


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


WATCHED = re.compile(
    r"^tfd:\s*\d+\s+events:\s*(?P<mask>[0-9a-f]+)\b.*?\bino:(?P<inode>[0-9a-f]+)", re.M
)


def listener_masks(worker: int, listeners: set[int]) -> list[int]:
    """The epoll event masks with which ``worker`` watches any of the ``listeners`` sockets."""
    masks = []
    for info in Path(f"/proc/{worker}/fdinfo").iterdir():
        with contextlib.suppress(OSError):
            for watched in WATCHED.finditer(info.read_text()):
                if int(watched["inode"], 16) in listeners:
                    masks.append(int(watched["mask"], 16))
    return masks


def test_every_worker_wakes_alone_for_a_new_connection(live_server):
    # The master holds the listening socket (and no other); each worker watches it in its epoll.
    master = live_server.process.pid
    listeners = socket_inodes(master)
    workers = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    assert len(workers) == 2 and listeners
    deadline = time.monotonic() + 30
    while True:  # a worker registers the listener when its event loop starts
        masks = {worker: listener_masks(worker, listeners) for worker in workers}
        if all(masks.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert all(len(m) == 1 for m in masks.values()), masks
    assert all(m[0] & select.EPOLLEXCLUSIVE and m[0] & select.EPOLLIN for m in masks.values())
