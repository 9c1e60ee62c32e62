"""Whole-blob PutObject and GetObject sent without botocore (``storage.s3_direct``): the same
signature botocore computes, the same objects, boto3 taking over whenever the answer is not a
plain success, and keep-alive connections reused and replaced when the server closed them."""

from __future__ import annotations

import base64
import hashlib
import http.server
import logging
import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lti_exchange.storage import StorageUnavailable
from lti_exchange.storage.s3 import S3Storage
from lti_exchange.storage.s3_direct import (
    EMPTY_SHA256,
    DirectRequestFailed,
    DirectS3,
    Target,
    sign_v4,
    target_for,
)
from tests.certificates import make_certificates
from tests.conftest import S3_ENV
from tests.storage.test_contract import read_all, write_blob

WHEN = datetime(2026, 12, 4, 18, 30, 5, tzinfo=UTC)


# --- the signature ----------------------------------------------------------------------------


def botocore_signature(method, url, headers, body, credentials, region):
    """botocore's own S3 Signature V4 of the same request at ``WHEN``: (canonical request,
    Authorization header)."""
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    request.context["timestamp"] = WHEN.strftime("%Y%m%dT%H%M%SZ")
    auth = S3SigV4Auth(credentials, "s3", region)
    auth._modify_request_before_signing(request)  # x-amz-date, token, payload hash
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    auth._inject_signature_to_request(request, signature)
    return canonical, request.headers["Authorization"]


@pytest.mark.parametrize(
    ("method", "prefix", "headers", "body", "token"),
    [
        (
            "PUT",
            "/bucket/exchange",
            {
                "content-length": "11",
                "x-amz-meta-sha256": hashlib.sha256(b"hello world").hexdigest(),
                "x-amz-checksum-sha256": "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=",
                "x-amz-sdk-checksum-algorithm": "SHA256",
            },
            b"hello world",
            None,
        ),
        ("GET", "/bucket/my  prefix/ü", {"x-amz-checksum-mode": "ENABLED"}, b"", "session-tok"),
        ("GET", "", {}, b"", None),
    ],
)
def test_the_signature_is_the_one_botocore_computes(method, prefix, headers, body, token):
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    key = "submissions/ab/0123456789abcdef0123456789abcdef"
    path = quote(f"{prefix}/{key}", safe="/~")
    payload = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    host = "s3.eu-west-1.example.org:9000"
    ours = sign_v4(method, host, path, headers, payload, credentials, "eu-west-1", WHEN)
    canonical, theirs = botocore_signature(
        method, f"http://{host}{path}", {**headers, "host": host}, body, credentials, "eu-west-1"
    )
    assert ours["authorization"] == theirs, canonical
    assert ours["x-amz-date"] == "20261204T183005Z"
    assert ours["x-amz-content-sha256"] == payload
    assert ours.get("x-amz-security-token") == token


def test_the_address_is_virtual_hosted_unless_the_bucket_cannot_be_a_host_name():
    assert target_for("https://s3.eu-west-1.amazonaws.com", "lti-blobs", False) == Target(
        "https", "lti-blobs.s3.eu-west-1.amazonaws.com", 443, ""
    )
    assert target_for("https://s3.amazonaws.com", "my.dotted.bucket", False).path_prefix == (
        "/my.dotted.bucket"
    )
    assert target_for("https://s3.amazonaws.com", "Upper", False).host == "s3.amazonaws.com"
    minio = target_for("http://minio.storage:9000", "lti-blobs", True)
    assert minio == Target("http", "minio.storage", 9000, "/lti-blobs")
    assert minio.host_header == "minio.storage:9000"
    assert target_for("https://s3.example.org/base/", "b", True).path_prefix == "/base/b"


# --- against a real S3 API server (moto) --------------------------------------------------------


def counted(outcome: str) -> float:
    """``lti_exchange_s3_direct_requests_total{outcome}`` as /metrics would show it."""
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("lti_exchange_s3_direct_requests_total", {"outcome": outcome})
    return value or 0.0


def test_blobs_go_up_and_come_back_directly_with_their_hash_and_checksum(s3):
    direct = s3.direct
    assert direct is not None
    data = os.urandom(300_000)
    sent_before = counted("sent")
    blob = write_blob(s3, data)
    assert (direct.sent, direct.fell_back) == (1, 0)
    assert counted("sent") == sent_before + 1
    head = s3.client.head_object(
        Bucket=s3.bucket, Key=f"exchange/{blob.key}", ChecksumMode="ENABLED"
    )
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest() == blob.sha256
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert read_all(s3, blob.key) == data
    assert (direct.sent, direct.fell_back) == (2, 0)


def test_an_object_boto3_wrote_is_read_directly(s3):
    data = b"x" * 70_000
    s3.client.put_object(
        Bucket=s3.bucket,
        Key="exchange/releases/ab/" + "c" * 32,
        Body=data,
        Metadata={"sha256": hashlib.sha256(data).hexdigest()},
    )
    assert read_all(s3, "releases/ab/" + "c" * 32) == data
    assert s3.direct is not None and s3.direct.sent == 1


def test_an_answer_that_is_not_a_success_goes_through_boto3_and_is_logged_once(
    s3_server, monkeypatch, caplog
):
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    storage = S3Storage("no-such-bucket-here", "x", endpoint_url=s3_server.endpoint_url)
    direct = storage.direct
    assert direct is not None
    handed_before = counted("handed_to_boto3")
    with caplog.at_level(logging.WARNING, logger="lti_exchange.storage.s3_direct"):
        for _ in range(2):
            with pytest.raises(StorageUnavailable) as info:  # boto3's answer, mapped as ever
                write_blob(storage, b"data")
            assert info.value.cause == "bucket_missing"
    assert (direct.sent, direct.fell_back) == (0, 2)
    assert counted("handed_to_boto3") == handed_before + 2
    warnings = [r for r in caplog.records if r.name == "lti_exchange.storage.s3_direct"]
    assert len(warnings) == 1 and "PutObject answered HTTP 404" in warnings[0].getMessage()


def test_a_missing_blob_is_not_found_without_a_warning(s3, caplog):
    from lti_exchange.storage import BlobNotFound

    with caplog.at_level(logging.WARNING), pytest.raises(BlobNotFound):
        s3.open("submissions/ab/" + "d" * 32)
    assert not [r for r in caplog.records if r.name == "lti_exchange.storage.s3_direct"]


def test_an_unreachable_endpoint_is_reported_as_before(monkeypatch):
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    from tests.conftest import free_port

    storage = S3Storage("b", "x", endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StorageUnavailable) as info:
        write_blob(storage, b"data")
    assert info.value.cause == "endpoint_unreachable"
    assert storage.direct is not None and storage.direct.fell_back == 1


@pytest.mark.parametrize(
    ("proxy", "no_proxy", "direct"),
    [("http://127.0.0.1:9", "", False), ("http://127.0.0.1:9", "127.0.0.1", True), ("", "", True)],
)
def test_only_boto3_goes_through_a_proxy(s3_server, monkeypatch, proxy, no_proxy, direct):
    for name, value in {**S3_ENV, "HTTP_PROXY": proxy, "NO_PROXY": no_proxy}.items():
        monkeypatch.setenv(name, value)
    for name in ("http_proxy", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    storage = S3Storage("b", "x", endpoint_url=s3_server.endpoint_url)
    assert (storage.direct is not None) is direct


def test_without_credentials_only_boto3_is_used(s3_server, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    storage = S3Storage("b", "x", endpoint_url=s3_server.endpoint_url)
    assert storage.direct is None
    with pytest.raises(StorageUnavailable) as info:
        write_blob(storage, b"data")
    assert info.value.cause == "credentials_missing"


# --- keep-alive connections ---------------------------------------------------------------------


class KeepAliveStore(http.server.ThreadingHTTPServer):
    """An HTTP/1.1 server that keeps what is PUT and answers GETs, keeping connections alive;
    ``drop_idle`` makes it close each connection after answering (as a server's idle timeout
    would), without saying so. It checks no signature: it stands in for connection handling."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _KeepAliveHandler)
        self.objects: dict[str, bytes] = {}
        self.connections = 0
        self.drop_idle = False


class _KeepAliveHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: KeepAliveStore

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        self.server.objects[self.path] = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(b"")

    def do_GET(self) -> None:  # noqa: N802
        self._answer(self.server.objects[self.path])

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-meta-sha256", hashlib.sha256(body).hexdigest())
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if self.server.drop_idle:
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def keep_alive_store(
    tls: ssl.SSLContext | None = None,
) -> Iterator[tuple[KeepAliveStore, DirectS3]]:
    server = KeepAliveStore()
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    target = Target("http", "127.0.0.1", server.server_address[1], "/bucket")
    try:
        yield server, DirectS3(target, Credentials("id", "secret"), "us-east-1", None)
    finally:
        server.shutdown()
        server.server_close()


def put(direct: DirectS3, key: str, data: bytes) -> None:
    direct.put(key, data, hashlib.sha256(data).hexdigest(), {})


def test_connections_are_kept_alive_and_reused():
    with keep_alive_store() as (server, direct):
        for index in range(5):
            put(direct, f"k{index}", b"%d" % index * 1000)
        answer = direct.get("k3", {})
        assert answer["ContentLength"] == 1000 and answer["Body"].read(10_000) == b"3" * 1000
        assert answer["Metadata"] == {"sha256": hashlib.sha256(b"3" * 1000).hexdigest()}
        assert server.connections == 1 and direct.pool.idle == 1
        assert (direct.sent, direct.fell_back) == (6, 0)


def test_a_connection_the_server_closed_while_idle_is_replaced():
    with keep_alive_store() as (server, direct):
        server.drop_idle = True
        for index in range(3):
            put(direct, f"k{index}", b"data")
        assert server.objects["/bucket/k2"] == b"data"
        assert server.connections == 3
        assert (direct.sent, direct.fell_back) == (3, 0)


def test_a_body_left_unread_closes_its_connection():
    with keep_alive_store() as (server, direct):
        put(direct, "big", b"z" * 200_000)
        assert direct.pool.idle == 1
        answer = direct.get("big", {})
        assert answer["Body"].read(1000) == b"z" * 1000
        answer["Body"].close()  # abandoned half-way: its connection cannot serve another
        assert direct.pool.idle == 0
        assert direct.get("big", {})["Body"].read(-1) == b"z" * 200_000
        assert direct.pool.idle == 1 and server.connections == 2


def test_a_refused_connection_is_a_failed_direct_request():
    from tests.conftest import free_port

    direct = DirectS3(
        Target("http", "127.0.0.1", free_port(), "/b"), Credentials("i", "s"), "us-east-1", None
    )
    with pytest.raises(DirectRequestFailed, match="ConnectionRefusedError"):
        put(direct, "k", b"data")
    assert direct.fell_back == 1


# --- TLS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("trusted", [True, False])
def test_https_endpoints_are_verified_with_boto3s_ca_bundle(tmp_path, monkeypatch, trusted):
    import boto3

    ca_file, cert_file, key_file = make_certificates(tmp_path, ("localhost",))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    if trusted:
        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca_file))
    else:
        monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with keep_alive_store(tls) as (server, _plain):
        session = boto3.session.Session()
        endpoint = f"https://localhost:{server.server_address[1]}"
        client = session.client("s3", endpoint_url=endpoint)
        direct = DirectS3.for_client(client, session, "bucket", path_style=True)
        assert direct is not None
        if trusted:
            put(direct, "k", b"secret data")
            assert server.objects["/bucket/k"] == b"secret data"
        else:
            with pytest.raises(DirectRequestFailed, match="SSLCertVerificationError"):
                put(direct, "k", b"secret data")
            assert server.objects == {}
