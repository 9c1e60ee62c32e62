"""Request bodies are bounded: 1 MiB for JSON and forms, answered before the body is read.

Run against ``guarded_server`` (memory-capped workers): before the bound, a 200 MB POST to the
unauthenticated ``/api/v1/token/refresh`` grew a worker by the size of the body.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from urllib.parse import urlsplit

import pytest
import requests

from lti_exchange.web.body_limits import MAX_BODY_BYTES
from tests.security.conftest import peak_rss_mb
from tests.support import TAR, MiB, assert_error, make_tar

pytestmark = pytest.mark.one_backend

CLAIMED = 200 * 1000 * 1000


class RawReply:
    """The status and body of an HTTP/1.1 answer read from a socket (enough for assert_error)."""

    def __init__(self, data: bytes) -> None:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status_code = int(lines[0].split()[1])
        self.headers = dict(line.split(": ", 1) for line in lines[1:])
        self.text = body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.text)


def send_claiming(server, path: str, claimed: int, sent: bytes, headers: str = "") -> RawReply:
    """Send headers declaring ``claimed`` bytes, then ``sent`` bytes (from another thread, as
    the server may never read them), and read the answer while still sending."""
    parts = urlsplit(server.url)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{headers}"
        f"Content-Length: {claimed}\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)

        def push() -> None:
            with contextlib.suppress(OSError):  # the server may answer and hang up first
                sock.sendall(sent)

        sender = threading.Thread(target=push, daemon=True)
        sender.start()
        reply = b""
        while b"\r\n\r\n" not in reply or not _complete(reply):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return RawReply(reply)


def _complete(reply: bytes) -> bool:
    head, _, body = reply.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def test_declared_huge_json_body_is_refused_before_reading(guarded_server):
    body = b'{"refresh_token": "' + b"x" * (4 * MiB) + b'"}'
    reply = send_claiming(
        guarded_server,
        "/api/v1/token/refresh",
        CLAIMED,
        body,
        "Content-Type: application/json\r\n",
    )
    error = assert_error(reply, 413, "payload_too_large", str(CLAIMED), str(MAX_BODY_BYTES))
    assert error["details"] == {"limit": MAX_BODY_BYTES}
    # Nothing of the body was buffered: the workers stay far below the 4 MB sent, let alone
    # the 200 MB claimed (they start at about 60 MB).
    assert peak_rss_mb(guarded_server) < 150


def test_chunked_json_body_over_the_bound_is_refused(guarded_server):
    def chunks():
        yield b'{"refresh_token": "'
        for _ in range(4):
            yield b"x" * (MiB // 2)
        yield b'"}'

    answer = requests.post(
        guarded_server.url + "/api/v1/token/refresh",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert_error(answer, 413, "payload_too_large", str(MAX_BODY_BYTES))
    assert peak_rss_mb(guarded_server) < 150


def test_json_body_at_the_bound_is_read(guarded_server):
    pad = MAX_BODY_BYTES - len(b'{"pad": ""}')
    body = b'{"pad": "' + b"x" * pad + b'"}'
    assert len(body) == MAX_BODY_BYTES
    url = guarded_server.url + "/api/v1/token/refresh"
    headers = {"Content-Type": "application/json"}
    answer = requests.post(url, data=body, headers=headers, timeout=60)
    assert_error(answer, 400, "invalid_request", "refresh_token")  # read, then judged
    answer = requests.post(url, data=body[:-1] + b' "}', headers=headers, timeout=60)
    assert_error(answer, 413, "payload_too_large")


@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/nowhere", "/healthz"])
def test_any_json_route_refuses_a_declared_huge_body(guarded_server, path):
    reply = send_claiming(guarded_server, path, 2 * MiB, b"x" * 4096)
    assert_error(reply, 413, "payload_too_large")


def test_lti_form_route_refuses_a_declared_huge_body(guarded_server):
    reply = send_claiming(
        guarded_server,
        "/lti/launch",
        CLAIMED,
        b"id_token=" + b"x" * MiB,
        "Content-Type: application/x-www-form-urlencoded\r\n",
    )
    assert reply.status_code == 413
    assert peak_rss_mb(guarded_server) < 150


def test_archive_uploads_keep_their_own_larger_limit(guarded_server, course):
    teacher = guarded_server.issue_token("teacher", course, "Instructor")
    big = make_tar({"p1.ipynb": b"{}", "data.bin": b"d" * (3 * MiB)})
    assert len(big) > 2 * MAX_BODY_BYTES
    answer = guarded_server.api(
        "POST", f"courses/{course}/assignments/ps1/releases", teacher, data=big, headers=TAR
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["size"] == len(big)
