"""Request bodies are bounded: 1 MiB for JSON and forms, answered before the body is read.

Run against ``guarded_server`` (memory-capped workers): before the bound, a 200 MB POST to the
unauthenticated ``/api/v1/token/refresh`` grew a worker by the size of the body. A chunked form
over the bound used to be cut at 1 MiB and processed; a JSON string full of escaped quotes froze
a worker for seconds in the nesting check.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from lti_exchange.web.body_limits import MAX_BODY_BYTES
from tests.security.conftest import peak_rss_mb
from tests.support import TAR, MiB, assert_error, make_tar

pytestmark = pytest.mark.one_backend

CLAIMED = 200 * 1000 * 1000
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LTI_FORM_ROUTES = ["/lti/launch", "/lti/launch/bind", "/lti/deep-link", "/lti/resource-link",
                   "/lti/dashboard"]  # fmt: skip


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


# --- bodies without a length (chunked) on the LTI pages ----------------------------------------


def padded_form(pad: int, fields: bytes) -> list[bytes]:
    """A chunked form: ``pad`` bytes of padding in 256 KiB chunks, then ``fields`` (which a
    body cut at the bound would lose)."""
    chunks = []
    while pad > 0:
        size = min(pad, 256 * 1024)
        chunks.append(b"pad=" + b"x" * (size - 5) + b"&")
        pad -= size
    return [*chunks, fields]


@pytest.mark.parametrize("path", LTI_FORM_ROUTES)
def test_chunked_form_over_the_bound_is_refused_not_cut(guarded_server, path):
    chunks = padded_form(MiB + MiB // 2, b"deep_link_token=t&assignment_id=ps1&state=s&id_token=x")
    answer = requests.post(
        guarded_server.url + path,
        data=iter(chunks),
        headers={**FORM, "Accept": "text/html", "Sec-Fetch-Site": "same-origin"},  # /bind asks
        timeout=60,
    )
    assert answer.status_code == 413, answer.text[:2000]
    assert str(MAX_BODY_BYTES) in answer.text
    assert peak_rss_mb(guarded_server) < 150


@pytest.mark.parametrize("path", ["/lti/deep-link", "/lti/resource-link"])
def test_chunked_json_over_the_bound_is_refused_on_the_lti_pages(guarded_server, path):
    chunks = [b'{"pad": "', *[b"x" * (MiB // 2)] * 3, b'", "bind_token": "t"}']
    answer = requests.post(
        guarded_server.url + path,
        data=iter(chunks),
        headers={**JSON, "Accept": "application/json"},
        timeout=60,
    )
    assert_error(answer, 413, "payload_too_large", str(MAX_BODY_BYTES))


def test_chunked_form_under_the_bound_is_read_whole(guarded_server):
    fields = b"deep_link_token=unknown&assignment_id=ps1"
    chunks = padded_form(MAX_BODY_BYTES - len(fields), fields)
    assert sum(map(len, chunks)) == MAX_BODY_BYTES
    answer = requests.post(
        guarded_server.url + "/lti/deep-link",
        data=iter(chunks),
        headers={**FORM, "Accept": "application/json"},
        timeout=60,
    )
    # The token after the padding was read (else: "deep_link_token is missing", 400).
    assert_error(answer, 401, "deep_link_expired")


@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\nabc\r\n0\r\n\r\n", b"4000\r\ndeep_link_token=t&assignment_id=ps1"],
    ids=["bad-chunk-size", "cut-off"],
)
@pytest.mark.parametrize("path", ["/lti/deep-link", "/lti/dashboard"])
def test_malformed_chunked_form_is_a_400(guarded_server, path, chunks):
    parts = urlsplit(guarded_server.url)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: application/json\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head + chunks)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.split(b"\r\n", 1)[0].split()[1:2] == [b"400"], reply[:1000]
    assert b"upload_incomplete" in reply, reply[:1000]


# --- the JSON nesting check takes linear time --------------------------------------------------

ESCAPED_QUOTES = b'"' + b'\\"' * 20000  # 40 KB; the regex check took ~7 s with the GIL held


def test_json_full_of_escaped_quotes_is_answered_at_once(guarded_server):
    url = guarded_server.url

    def attack() -> tuple[requests.Response, float]:
        start = time.monotonic()
        answer = requests.post(
            url + "/api/v1/token/refresh", data=ESCAPED_QUOTES, headers=JSON, timeout=60
        )
        return answer, time.monotonic() - start

    with ThreadPoolExecutor(4) as pool:
        attacks = [pool.submit(attack) for _ in range(4)]  # both workers, several threads
        time.sleep(0.2)
        start = time.monotonic()
        health = requests.get(url + "/healthz", timeout=60)
        health_took = time.monotonic() - start
        answers = [attack.result() for attack in attacks]
    assert health.status_code == 200
    assert health_took < 2, f"/healthz took {health_took:.1f} s during the attack"
    for answer, took in answers:
        assert_error(answer, 400, "invalid_request", "not valid JSON")
        assert took < 2, f"the attack took {took:.1f} s"
