"""The plugin's HTTP transport (``nbgrader_plugin.transport``) against real sockets: an origin
server, a TLS origin with its own certificate authority, and a forwarding / CONNECT proxy, all on
loopback in this process. The proxy and CA settings come from the environment, read once per
URL and values; nothing from the environment (``~/.netrc``) replaces the bearer token."""

from __future__ import annotations

import base64
import http.server
import io
import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbgrader_plugin.client import DownloadCut, ExchangeClient, ExchangeClientError, ResponseBody
from nbgrader_plugin.connect import LoginProblem, check_login
from nbgrader_plugin.tokens import TokenEntry
from nbgrader_plugin.transport import (
    ENVIRONMENT_VARIABLES,
    TransportError,
    bypasses_proxy,
    route_for,
)
from tests.certificates import make_certificates
from tests.support import pipe_bytes


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# -- an origin server that records what it is sent ------------------------------------------------
class LoopbackServer(http.server.ThreadingHTTPServer):
    """A threaded HTTP server on a free loopback port."""

    daemon_threads = True

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class QuietHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass


class Origin(LoopbackServer):
    def __init__(self) -> None:
        super().__init__(OriginHandler)
        self.seen: list[dict[str, Any]] = []
        self.connections = 0
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        # Per path, what the next requests get before the route's answer: "drop" (the body is
        # read, then the connection closed unanswered: a lost answer), "short" (half the
        # route's answer, then the connection closed) or an HTTP status.
        self.scripts: dict[str, list[str]] = {}

    def get_request(self):  # type: ignore[no-untyped-def]
        self.connections += 1
        return super().get_request()


class OriginHandler(QuietHandler):
    server: Origin

    def _answer(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.endswith("/refuse-early"):  # as a server does for an upload over its limit
            self._refuse_unread()
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        script = self.server.scripts.get(path)
        if script:
            step = script.pop(0)
            if step == "drop":
                self.close_connection = True
                return
            if step == "short":  # the route's head, half its body, then the connection ends
                _status, headers, answer = self.server.routes[path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer[: len(answer) // 2])
                self.close_connection = True
                return
            self._error(int(step))
            return
        status, headers, answer = self.server.routes.get(
            path, (200, {"Content-Type": "application/json"}, json.dumps({"ok": True}).encode())
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        if path.endswith("/then-close"):  # as an idle keep-alive timeout would, unannounced
            self.close_connection = True

    def _error(self, status: int) -> None:
        answer = json.dumps(
            {"error": {"status": status, "code": f"e{status}", "message": f"Error {status}."}}
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def _refuse_unread(self) -> None:
        answer = json.dumps(
            {"error": {"status": 413, "code": "payload_too_large", "message": "Too large."}}
        ).encode()
        self.send_response(413)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer)
        self.wfile.flush()
        self.close_connection = True

    do_GET = do_POST = do_DELETE = _answer


def serve(server: http.server.HTTPServer) -> Iterator[Any]:
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def origin() -> Iterator[Origin]:
    yield from serve(Origin())


def client_for(url: str, token: str = "the-token") -> ExchangeClient:
    return ExchangeClient(url, TokenEntry(course_id="c1", access_token=token, service_url=url))


# -- a proxy: absolute-form forwarding for http://, CONNECT tunnels for https:// -----------------
class Proxy(LoopbackServer):
    def __init__(self) -> None:
        super().__init__(ProxyHandler)
        self.seen: list[tuple[str, str, str | None]] = []  # (method, target, Proxy-Authorization)


class ProxyHandler(QuietHandler):
    server: Proxy

    def do_CONNECT(self) -> None:
        self.server.seen.append(("CONNECT", self.path, self.headers.get("Proxy-Authorization")))
        host, port = self.path.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        pipes = [
            threading.Thread(target=pipe_bytes, args=(self.connection, upstream), daemon=True),
            threading.Thread(target=pipe_bytes, args=(upstream, self.connection), daemon=True),
        ]
        for pipe in pipes:
            pipe.start()
        for pipe in pipes:
            pipe.join()
        self.close_connection = True

    def _forward(self) -> None:
        self.server.seen.append((self.command, self.path, self.headers.get("Proxy-Authorization")))
        if not self.path.startswith("http://"):
            self.send_error(400, "a proxy takes absolute URLs")
            return
        rest = self.path[len("http://") :]
        netloc, _, target = rest.partition("/")
        host, port = netloc.rsplit(":", 1)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        head = [f"{self.command} /{target} HTTP/1.1"]
        head += [
            f"{name}: {value}"
            for name, value in self.headers.items()
            if name.lower() not in ("proxy-authorization", "connection")
        ]
        head.append("Connection: close")
        with socket.create_connection((host, int(port))) as upstream:
            upstream.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            answer = b""
            while data := upstream.recv(65536):
                answer += data
        self.wfile.write(answer)
        self.close_connection = True

    do_GET = do_POST = _forward


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    yield from serve(Proxy())


# -- a TLS origin with its own certificate authority ---------------------------------------------
@pytest.fixture
def tls_origin(tmp_path, request) -> Iterator[tuple[Origin, Path]]:
    names = getattr(request, "param", ("localhost", "127.0.0.1"))
    ca_file, cert_file, key_file = make_certificates(tmp_path, names)
    server = Origin()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for running in serve(server):
        yield running, ca_file


def https_url(server: Origin, host: str = "localhost") -> str:
    return f"https://{host}:{server.server_address[1]}"


# -- the bearer token and nothing else -----------------------------------------------------------
def test_a_netrc_entry_for_the_host_does_not_replace_the_token(origin, tmp_path, monkeypatch):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    with client_for(origin.url) as client:
        assert client.get_json("me") == {"ok": True}
    sent = origin.seen[0]["headers"]
    assert sent["Authorization"] == "Bearer the-token"
    assert "Accept-Encoding" not in sent  # answers come unencoded: nothing to decode


def test_requests_reuse_one_connection_and_carry_their_own_ids(origin):
    with client_for(origin.url) as client:
        for _ in range(3):
            client.get_json("courses/c1/assignments", student_id="s 1", assignment_id=None)
    assert origin.connections == 1
    assert [seen["path"] for seen in origin.seen] == [
        "/api/v1/courses/c1/assignments?student_id=s+1"
    ] * 3
    ids = {seen["headers"]["X-Request-ID"] for seen in origin.seen}
    assert len(ids) == 3


def test_a_kept_alive_connection_the_server_closed_is_opened_again(origin):
    with client_for(origin.url) as client:
        client.get_json("then-close")  # the server closes the connection after answering
        assert client.get_json("me") == {"ok": True}
        assert client.get_json("me") == {"ok": True}
    assert origin.connections == 2


def test_an_upload_streams_its_body_with_its_length(origin):
    data = bytes(range(256)) * 5000
    seen_progress: list[int] = []
    with client_for(origin.url) as client:
        answer = client.upload(
            "POST", "courses/c1/x", io.BytesIO(data), len(data), seen_progress.append
        )
    assert answer == {"ok": True}
    assert origin.seen[0]["body"] == data
    assert origin.seen[0]["headers"]["Content-Length"] == str(len(data))
    assert sum(seen_progress) == len(data)


QUICK = (0.01, 0.01, 0.01, 0.01, 0.01)


def test_an_upload_with_a_key_is_sent_again_after_a_lost_answer_or_a_try_again(origin):
    origin.scripts["/api/v1/courses/c1/x"] = ["drop", "503", "502", "504"]
    data = bytes(range(256)) * 5000
    progress: list[int] = []
    retries: list[tuple[str | None, int | None, float, int, int]] = []
    with client_for(origin.url) as client:
        client.retry_delays = QUICK
        answer = client.upload(
            "POST",
            "courses/c1/x",
            io.BytesIO(data),
            len(data),
            progress.append,
            idempotency_key="k-1",
            on_retry=lambda e, delay, n, of: retries.append((e.code, e.status, delay, n, of)),
        )
    assert answer == {"ok": True}
    assert [seen["body"] for seen in origin.seen] == [data] * 5
    assert [seen["headers"]["Idempotency-Key"] for seen in origin.seen] == ["k-1"] * 5
    assert retries == [
        ("unreachable", None, 0.01, 2, 6),
        ("e503", 503, 0.01, 3, 6),
        ("e502", 502, 0.01, 4, 6),
        ("e504", 504, 0.01, 5, 6),
    ]
    assert sum(progress) == len(data)  # each attempt's bytes taken off before the next
    assert origin.connections == 5


def test_an_upload_stops_retrying_after_its_delays(origin):
    origin.scripts["/api/v1/courses/c1/x"] = ["503"] * 10
    with client_for(origin.url) as client, pytest.raises(ExchangeClientError) as failed:
        client.retry_delays = (0.01, 0.01)
        client.upload("POST", "courses/c1/x", io.BytesIO(b"abc"), 3, idempotency_key="k")
    assert failed.value.status == 503
    assert len(origin.seen) == 3


@pytest.mark.parametrize(
    ("key", "script"), [(None, ["503"]), (None, ["drop"]), ("k", ["500"]), ("k", ["422"])]
)
def test_an_upload_without_a_key_or_refused_for_good_is_sent_once(origin, key, script):
    origin.scripts["/api/v1/courses/c1/x"] = script
    with client_for(origin.url) as client, pytest.raises(ExchangeClientError):
        client.retry_delays = QUICK
        client.upload("POST", "courses/c1/x", io.BytesIO(b"abc"), 3, idempotency_key=key)
    assert len(origin.seen) == 1
    assert ("Idempotency-Key" in origin.seen[0]["headers"]) == (key is not None)


def test_a_get_is_asked_again_after_a_lost_answer_or_a_try_again(origin, caplog):
    origin.scripts["/api/v1/me"] = ["drop", "503", "502"]
    origin.scripts["/api/v1/archive"] = ["504"]
    origin.routes["/api/v1/archive"] = (200, {"Content-Type": "application/x-tar"}, b"tar")
    with client_for(origin.url) as client:
        client.safe_retry_delays = (0.01, 0.01, 0.01)
        assert client.get_json("me") == {"ok": True}
        with client.download("archive") as response:
            assert response.read() == b"tar"
    assert [seen["path"] for seen in origin.seen] == ["/api/v1/me"] * 4 + ["/api/v1/archive"] * 2
    waits = [r.getMessage() for r in caplog.records if "Asking again in" in r.getMessage()]
    assert len(waits) == 4 and "Cannot reach the exchange" in waits[0] and "Error 503." in waits[1]


def test_a_get_gives_up_after_its_waits_and_other_requests_are_sent_once(origin):
    origin.scripts["/api/v1/me"] = ["503"] * 5
    origin.scripts["/api/v1/courses/c1/grades"] = ["503"]
    with client_for(origin.url) as client:
        client.safe_retry_delays = (0.01, 0.01)
        with pytest.raises(ExchangeClientError) as failed:
            client.get_json("me")
        assert failed.value.status == 503
        with pytest.raises(ExchangeClientError):
            client.call("POST", "courses/c1/grades", json_body={"x": 1})
    assert [seen["path"] for seen in origin.seen] == ["/api/v1/me"] * 3 + [
        "/api/v1/courses/c1/grades"
    ]


def read_whole(client: ExchangeClient, url_path: str, into: bool = False) -> bytes:
    """A download read to its end through ``ResponseBody`` (by ``read`` or ``readinto``)."""
    with client.download(url_path) as response:
        body, parts = ResponseBody(response), []
        while True:
            if into:
                buffer = bytearray(7000)
                count = body.readinto(buffer)
                part = bytes(buffer[:count])
            else:
                part = body.read(7000)
            if not part:
                return b"".join(parts)
            parts.append(part)


@pytest.mark.parametrize("into", [False, True])
def test_a_download_that_ends_short_is_a_cut_asked_again_from_the_start(origin, into):
    whole = os.urandom(100_000)
    origin.routes["/api/v1/archive"] = (200, {"Content-Type": "application/x-tar"}, whole)
    origin.scripts["/api/v1/archive"] = ["short", "short", "short"]
    told: list[tuple[str, float, int, int]] = []
    with client_for(origin.url) as client:
        with pytest.raises(DownloadCut) as cut:
            read_whole(client, "archive", into)
        assert (cut.value.received, cut.value.expected) == (50_000, 100_000)
        assert cut.value.code == "download_cut"
        assert str(cut.value).startswith(
            "the download broke off after 50000 of 100000 bytes (the connection was cut). "
            "Run the command again"
        )
        got = client.again_if_cut(
            (0.01, 0.01),
            lambda: read_whole(client, "archive", into),
            lambda error, delay, number, attempts: told.append(
                (error.summary, delay, number, attempts)
            ),
        )
    assert got == whole
    assert [t[1:] for t in told] == [(0.01, 2, 3), (0.01, 3, 3)]
    assert all(t[0].startswith("the download broke off after 50000 of 100000") for t in told)


def test_a_post_download_is_asked_again_until_its_head_arrives(origin):
    """A collection (a POST that marks nothing until its answer has gone out whole)."""
    origin.routes["/api/v1/collection"] = (200, {"Content-Type": "application/x-tar"}, b"tar")
    origin.scripts["/api/v1/collection"] = ["drop", "503"]
    with client_for(origin.url) as client:
        client.safe_retry_delays = (0.01, 0.01)
        with client.download("collection", method="POST", json_body={"x": 1}) as response:
            assert response.read() == b"tar"
    assert [(seen["method"], seen["body"]) for seen in origin.seen] == [("POST", b'{"x": 1}')] * 3


def test_a_short_body_read_to_its_end_at_once_counts_what_came(origin):
    origin.routes["/api/v1/archive"] = (200, {}, b"x" * 100_000)
    origin.scripts["/api/v1/archive"] = ["short"]
    with client_for(origin.url) as client, client.download("archive") as response:
        body = ResponseBody(response)
        assert body.read(0) == b""
        with pytest.raises(DownloadCut) as cut:
            body.read()
    assert (cut.value.received, cut.value.expected) == (50_000, 100_000)


def test_a_json_answer_cut_short_is_asked_again_not_called_not_json(origin):
    origin.routes["/api/v1/me"] = (
        200,
        {"Content-Type": "application/json"},
        json.dumps({"ok": True, "pad": "x" * 5000}).encode(),
    )
    origin.scripts["/api/v1/me"] = ["short", "short"]
    with client_for(origin.url) as client:
        client.safe_retry_delays = (0.01, 0.01)
        assert client.get_json("me")["ok"] is True  # the third answer came whole
        origin.scripts["/api/v1/me"] = ["short"]
        client.safe_retry_delays = ()
        with pytest.raises(ExchangeClientError) as failed:
            client.get_json("me")
    assert failed.value.code == "unreachable"
    assert "the answer ended early" in str(failed.value)


def test_only_a_cut_is_asked_again_by_again_if_cut(origin):
    origin.routes["/api/v1/archive"] = (200, {"Content-Type": "application/x-tar"}, b"x" * 10)
    origin.scripts["/api/v1/archive"] = ["404", "short"]
    with client_for(origin.url) as client:
        client.safe_retry_delays = ()
        with pytest.raises(ExchangeClientError) as refused:
            client.again_if_cut((0.01, 0.01), lambda: read_whole(client, "archive"))
        assert refused.value.status == 404
        with pytest.raises(DownloadCut):
            client.again_if_cut((), lambda: read_whole(client, "archive"))
    assert len(origin.seen) == 2


def test_an_answer_sent_before_the_upload_ended_is_what_the_user_sees(origin):
    data = b"\0" * (32 * 1024 * 1024)  # far more than the socket buffers hold
    with client_for(origin.url) as client, pytest.raises(ExchangeClientError) as failed:
        client.upload("POST", "courses/c1/refuse-early", io.BytesIO(data), len(data))
    assert failed.value.status == 413 and failed.value.code == "payload_too_large"
    assert str(failed.value).startswith("Too large.")


def test_an_answer_closed_early_does_not_poison_the_next_request(origin):
    origin.routes["/api/v1/big"] = (200, {"Content-Type": "application/x-tar"}, b"x" * 500_000)
    with client_for(origin.url) as client:
        with client.download("big") as response:
            assert response.read(10) == b"x" * 10
        assert client.get_json("me") == {"ok": True}


def test_a_redirect_names_the_address_to_configure(origin):
    origin.routes["/api/v1/me"] = (301, {"Location": "https://exchange.example.edu/api/v1/me"}, b"")
    with client_for(origin.url) as client, pytest.raises(ExchangeClientError) as failed:
        client.get_json("me")
    assert failed.value.code == "redirected"
    assert "https://exchange.example.edu/api/v1/me" in str(failed.value)
    assert "c.Exchange.service_url" in str(failed.value)


def test_an_answer_that_is_not_json_says_to_check_the_url(origin):
    origin.routes["/api/v1/me"] = (200, {"Content-Type": "text/html"}, b"<html>a portal</html>")
    with client_for(origin.url) as client, pytest.raises(ExchangeClientError) as failed:
        client.get_json("me")
    assert failed.value.code == "not_json" and "service_url" in str(failed.value)


def test_an_unreachable_service_says_what_to_check():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    with (
        client_for(f"http://127.0.0.1:{port}") as client,
        pytest.raises(ExchangeClientError) as failed,
    ):
        client.safe_retry_delays = (0.01,)  # asked twice, as any GET without an answer
        client.get_json("me")
    assert failed.value.code == "unreachable"
    message = str(failed.value)
    assert "Cannot reach the exchange" in message and "ConnectionRefusedError" in message
    assert failed.value.request_id


# -- proxies --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypassed"),
    [
        ("exchange.example.edu", 443, "example.edu", True),
        ("exchange.example.edu", 443, ".example.edu", True),
        ("exchange.example.edu", 443, "*.example.edu", True),
        ("exchange.example.edu", 443, "other.edu, example.org", False),
        ("notexample.edu", 443, "example.edu", False),
        ("exchange.example.edu", 443, "exchange.example.edu:8443", False),
        ("exchange.example.edu", 8443, "exchange.example.edu:8443", True),
        ("10.2.3.4", 80, "10.0.0.0/8", True),
        ("10.2.3.4", 80, "192.168.0.0/16,127.0.0.1", False),
        ("exchange.svc.cluster.local", 80, "10.0.0.0/8 .svc.cluster.local", True),
        ("anything.example", 80, "*", True),
        ("Exchange.Example.EDU", 443, "example.edu", True),
    ],
)
def test_no_proxy_entries(host, port, no_proxy, bypassed):
    assert bypasses_proxy(host, port, no_proxy) is bypassed


def test_the_route_is_read_once_per_url_and_environment(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.edu:3128")
    first = route_for("https://exchange.example.edu")
    assert first.proxy is not None and (first.proxy.host, first.proxy.port) == (
        "proxy.example.edu",
        3128,
    )
    assert route_for("https://exchange.example.edu") is first
    monkeypatch.setenv("NO_PROXY", "example.edu")
    assert route_for("https://exchange.example.edu").proxy is None
    monkeypatch.setenv("https_proxy", "proxy.example.edu:8080")  # lower case wins; no scheme
    monkeypatch.delenv("NO_PROXY")
    second = route_for("https://exchange.example.edu")
    assert second.proxy is not None and second.proxy.port == 8080


def test_a_proxy_the_plugin_cannot_use_is_refused_with_what_to_do(monkeypatch):
    monkeypatch.setenv("ALL_PROXY", "socks5://proxy.example.edu:1080")
    with pytest.raises(TransportError) as failed:
        route_for("http://exchange.example.edu")
    assert "NO_PROXY" in str(failed.value) and "http:// proxy" in str(failed.value)


def test_plain_http_goes_through_the_proxy_with_its_credentials(origin, proxy, monkeypatch):
    user_proxy = proxy.url.replace("http://", "http://ta%40uni:p%3Ass@")
    monkeypatch.setenv("HTTP_PROXY", user_proxy)
    with client_for(origin.url) as client:
        assert client.get_json("me", q="1") == {"ok": True}
    method, target, authorization = proxy.seen[0]
    assert (method, target) == ("GET", origin.url + "/api/v1/me?q=1")
    assert authorization == "Basic " + base64.b64encode(b"ta@uni:p:ss").decode()
    assert origin.seen[0]["headers"]["Authorization"] == "Bearer the-token"


def test_https_goes_through_a_connect_tunnel(tls_origin, proxy, monkeypatch):
    server, ca_file = tls_origin
    monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("http://", "http://user:pw@"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    with client_for(https_url(server)) as client:
        assert client.get_json("me") == {"ok": True}
        assert client.get_json("me") == {"ok": True}  # the same tunnel
    assert proxy.seen == [
        ("CONNECT", f"localhost:{server.server_address[1]}", "Basic dXNlcjpwdw==")
    ]
    assert origin_paths(server) == ["/api/v1/me", "/api/v1/me"]


def origin_paths(server: Origin) -> list[str]:
    return [seen["path"] for seen in server.seen]


def test_no_proxy_skips_the_proxy(origin, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
    with client_for(origin.url) as client:
        client.get_json("me")
    assert proxy.seen == [] and len(origin.seen) == 1


# -- TLS ------------------------------------------------------------------------------------------
def test_an_institution_ca_given_by_requests_ca_bundle_is_trusted(tls_origin, monkeypatch):
    server, ca_file = tls_origin
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    with client_for(https_url(server)) as client:
        assert client.get_json("me") == {"ok": True}


def test_ssl_cert_file_is_honoured_too(tls_origin, monkeypatch):
    server, ca_file = tls_origin
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    with client_for(https_url(server, "127.0.0.1")) as client:
        assert client.get_json("me") == {"ok": True}


def test_an_untrusted_certificate_is_refused_with_what_to_set(tls_origin):
    server, _ca_file = tls_origin
    with client_for(https_url(server)) as client, pytest.raises(ExchangeClientError) as failed:
        client.get_json("me")
    message = str(failed.value)
    assert "not trusted" in message and "REQUESTS_CA_BUNDLE" in message
    assert server.seen == []
    assert failed.value.code == "connection_failed"  # not asked again: no better a moment later
    assert server.connections == 1


@pytest.mark.parametrize("tls_origin", [("exchange.example.edu",)], indirect=True)
def test_a_certificate_for_another_name_is_refused(tls_origin, monkeypatch):
    server, ca_file = tls_origin
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    with client_for(https_url(server)) as client, pytest.raises(ExchangeClientError) as failed:
        client.get_json("me")
    assert "not trusted" in str(failed.value) and "localhost" in str(failed.value)
    assert server.seen == []


def test_a_ca_bundle_that_cannot_be_read_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(TransportError) as failed:
        route_for("https://exchange.example.edu")
    assert "REQUESTS_CA_BUNDLE" in str(failed.value) and "missing.pem" in str(failed.value)


# -- lti-exchange login takes the same way ---------------------------------------------------------
def test_login_goes_through_the_proxy_and_trusts_the_same_authorities(
    tls_origin, proxy, monkeypatch, tmp_path
):
    server, ca_file = tls_origin
    me = json.dumps({"username": "ta1", "course_id": "c1"}).encode()
    server.routes["/api/v1/me"] = (200, {"Content-Type": "application/json"}, me)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine localhost login someone password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    assert check_login(https_url(server), "the-token", timeout=5)["username"] == "ta1"
    assert [seen[0] for seen in proxy.seen] == ["CONNECT"]
    assert server.seen[0]["headers"]["Authorization"] == "Bearer the-token"


def test_login_to_an_untrusted_certificate_names_the_variables(tls_origin):
    server, _ca_file = tls_origin
    with pytest.raises(LoginProblem) as refused:
        check_login(https_url(server), "the-token", timeout=5)
    assert "not trusted" in str(refused.value) and "REQUESTS_CA_BUNDLE" in str(refused.value)


def test_login_with_a_ca_bundle_that_cannot_be_read_names_it(monkeypatch, tmp_path):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(LoginProblem) as refused:
        check_login("https://exchange.example.edu", "the-token", timeout=5)
    assert "REQUESTS_CA_BUNDLE" in str(refused.value) and "missing.pem" in str(refused.value)
