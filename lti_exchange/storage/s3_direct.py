"""PutObject and GetObject for whole blobs, sent without botocore's per-request machinery.

A boto3 call spends 1.3–2.5 ms of CPU on the client side (parameter checks, event hooks, header
maps, parsing) before and after its bytes move: a PutObject of 1 MiB cost ~3 ms, an HTTP PUT of
the same bytes ~0.7 ms (``bench/README.md``). At a deadline every submission is one PutObject
and every collected submission one GetObject, so those two go out here, signed with AWS
Signature Version 4 on pooled ``http.client`` connections. Everything else stays with boto3.

Only the plain success is handled here. Anything else before the answer's body (an error
status, a redirect to another region, a refused connection, a timeout) sends the same request
again through boto3, whose retries, redirects and errors then apply exactly as before: a failure
here costs time, never a different outcome. The first such answer of each kind is logged as a
warning (not a GetObject's 404: a missing blob is answered by boto3 as usual). A body that breaks
off while it streams is the reader's error, as it is with boto3's body.

Not used (``DirectS3.for_client`` gives None, boto3 does everything) where a proxy applies to
the endpoint, or where there are no credentials. Credentials, region, endpoint and CA bundle are
the boto3 client's own, so they follow the same AWS settings; credentials that expire (roles,
web identity) are refreshed by botocore.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from lti_exchange.observability import count_s3_direct

log = logging.getLogger(__name__)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
KEPT_CONNECTIONS = 32  # idle connections kept per process
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
_RETRYABLE_SEND = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_META_PREFIX = "x-amz-meta-"


class DirectRequestFailed(Exception):
    """The direct request got no plain success; the caller sends it through boto3 instead."""


@dataclass(frozen=True)
class Target:
    """Where a bucket's objects are: scheme, host (with a non-default port) and path prefix."""

    scheme: str
    host: str
    port: int
    path_prefix: str  # "/bucket" (path style) or "" (virtual-hosted style)

    @property
    def host_header(self) -> str:
        return self.host if self.port == default_port(self.scheme) else f"{self.host}:{self.port}"


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def target_for(endpoint_url: str, bucket: str, path_style: bool) -> Target:
    """The bucket's address at ``endpoint_url``: virtual-hosted (``bucket.host``) unless
    ``path_style`` or the bucket's name cannot be a host name label (then ``host/bucket``)."""
    parts = urlsplit(endpoint_url)
    scheme = parts.scheme or "https"
    host = parts.hostname or ""
    port = parts.port or default_port(scheme)
    base = parts.path.rstrip("/")
    label_ok = bucket.islower() and "." not in bucket and bucket.replace("-", "").isalnum()
    if path_style or not label_ok:
        return Target(scheme, host, port, f"{base}/{bucket}")
    return Target(scheme, f"{bucket}.{host}", port, base)


def sign_v4(
    method: str,
    host: str,
    path: str,
    headers: Mapping[str, str],
    payload_sha256: str,
    credentials: Any,
    region: str,
    now: datetime,
) -> dict[str, str]:
    """The request's headers with its AWS Signature Version 4 (service ``s3``) added.

    ``path`` is already URI-encoded; ``headers`` are signed as given (lower-case names), with
    ``host``, ``x-amz-date``, ``x-amz-content-sha256`` and any session token added.
    """
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    signed = {name.lower(): " ".join(str(value).split()) for name, value in headers.items()}
    signed["host"] = host
    signed["x-amz-date"] = stamp
    signed["x-amz-content-sha256"] = payload_sha256
    if credentials.token:
        signed["x-amz-security-token"] = credentials.token
    names = sorted(signed)
    canonical = "\n".join(
        [
            method,
            path,
            "",  # no query string
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{credentials.secret_key}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return signed


class _Connections:
    """Idle keep-alive connections to one host, shared by a process's threads."""

    def __init__(self, target: Target, tls: ssl.SSLContext | None) -> None:
        self._target = target
        self._tls = tls
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    @property
    def idle(self) -> int:
        return len(self._idle)

    def take(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection and whether it was used before (it may have been closed since)."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        target = self._target
        if self._tls is not None:
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                target.host, target.port, timeout=CONNECT_TIMEOUT, context=self._tls
            )
        else:
            connection = http.client.HTTPConnection(
                target.host, target.port, timeout=CONNECT_TIMEOUT
            )
        return connection, False

    def give_back(
        self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> None:
        """Keep ``connection``, whose ``response`` has been read to its end, for the next
        request; closed instead when the server said it closes it, or enough are kept."""
        if not response.will_close:
            with self._lock:
                if len(self._idle) < KEPT_CONNECTIONS:
                    self._idle.append(connection)
                    return
        connection.close()


class DirectBody:
    """A GetObject body: ``read(n)`` and ``close()``, as boto3's; the connection goes back to
    the pool once the body has been read to its end, and is closed if it is abandoned."""

    def __init__(
        self,
        response: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
        pool: _Connections,
    ) -> None:
        self._response = response
        self._connection: http.client.HTTPConnection | None = connection
        self._pool = pool

    def read(self, size: int = -1) -> bytes:
        data = self._response.read(None if size < 0 else size)
        if self._response.isclosed():
            self._release()
        return data

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.give_back(connection, self._response)


class DirectS3:
    """PutObject and GetObject of one bucket over pooled connections (one per process)."""

    def __init__(self, target: Target, credentials: Any, region: str, tls: ssl.SSLContext | None):
        self.target = target
        self._credentials = credentials
        self.region = region
        self.pool = _Connections(target, tls)
        self.sent = 0  # requests answered here
        self.fell_back = 0  # requests handed to boto3
        self._warned: set[str] = set()

    @classmethod
    def for_client(
        cls, client: Any, session: Any, bucket: str, path_style: bool
    ) -> DirectS3 | None:
        """The direct route to ``bucket`` with the boto3 ``client``'s settings, or None where
        only boto3 can go (a proxy applies, no credentials, an endpoint that is not HTTP(S))."""
        from botocore.utils import get_environ_proxies

        endpoint = client.meta.endpoint_url
        if urlsplit(endpoint).scheme not in ("http", "https"):
            return None
        if client.meta.config.proxies or get_environ_proxies(endpoint):
            return None
        credentials = session.get_credentials()  # resolved already: the client was built
        if credentials is None:
            return None
        region = client.meta.region_name or "us-east-1"
        if region == "aws-global":
            region = "us-east-1"
        target = target_for(endpoint, bucket, path_style)
        tls = None
        if target.scheme == "https":
            from botocore.httpsession import get_cert_path

            bundle = session._session.get_config_variable("ca_bundle") or get_cert_path(True)
            tls = ssl.create_default_context(cafile=bundle)
        return cls(target, credentials, region, tls)

    def put(self, key: str, body: bytes, sha256_hex: str, headers: Mapping[str, str]) -> None:
        """PutObject ``body`` (whose SHA-256 is ``sha256_hex``) under ``key`` with ``headers``
        (``x-amz-meta-*``, ``x-amz-checksum-sha256``); raises ``DirectRequestFailed``."""
        response, connection = self._send(
            "PUT", key, {**headers, "content-length": str(len(body))}, body, sha256_hex
        )
        response.read()
        self.pool.give_back(connection, response)

    def get(self, key: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """GetObject ``key``: an answer shaped like boto3's (``Body``, ``ContentLength``,
        ``Metadata``, ``ChecksumSHA256``, ``ETag``); raises ``DirectRequestFailed``."""
        response, connection = self._send("GET", key, headers, None, EMPTY_SHA256)
        length = response.getheader("content-length")
        if length is None or not length.isdigit():
            connection.close()
            raise self._failed("GetObject", "an answer without Content-Length")
        answer: dict[str, Any] = {
            "Body": DirectBody(response, connection, self.pool),
            "ContentLength": int(length),
            "Metadata": {
                name[len(_META_PREFIX) :]: value
                for name, value in ((n.lower(), v) for n, v in response.getheaders())
                if name.startswith(_META_PREFIX)
            },
            "ETag": response.getheader("etag"),
        }
        checksum = response.getheader("x-amz-checksum-sha256")
        if checksum:
            answer["ChecksumSHA256"] = checksum
        if int(length) == 0:
            answer["Body"].read(0)  # nothing to read: the connection is free now
        return answer

    def _send(
        self,
        method: str,
        key: str,
        headers: Mapping[str, str],
        body: bytes | None,
        payload_sha256: str,
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
        """Send the request; a 2xx response and its connection. A connection kept from an
        earlier request that the server has closed meanwhile is replaced once."""
        operation = "PutObject" if method == "PUT" else "GetObject"
        path = quote(f"{self.target.path_prefix}/{key}", safe="/~")
        while True:
            connection, reused = self.pool.take()
            try:
                signed = sign_v4(
                    method,
                    self.target.host_header,
                    path,
                    headers,
                    payload_sha256,
                    self._credentials.get_frozen_credentials(),
                    self.region,
                    datetime.now(UTC),
                )
                if connection.sock is None:
                    connection.connect()  # within CONNECT_TIMEOUT; then the read timeout
                    connection.sock.settimeout(READ_TIMEOUT)  # type: ignore[attr-defined]
                connection.request(method, path, body=body, headers=signed)
                response = connection.getresponse()
            except _RETRYABLE_SEND as exc:
                connection.close()
                if reused:
                    continue  # the server closed the idle connection: a fresh one
                raise self._failed(operation, exc.__class__.__name__) from exc
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                raise self._failed(operation, exc.__class__.__name__) from exc
            if 200 <= response.status < 300:
                self.sent += 1
                count_s3_direct("sent")
                return response, connection
            response.read(64 * 1024)
            connection.close()
            raise self._failed(
                operation,
                f"HTTP {response.status}",
                quiet=method == "GET" and response.status == 404,
            )

    def _failed(self, operation: str, what: str, quiet: bool = False) -> DirectRequestFailed:
        """Count a request handed to boto3; warn once per kind (not for a missing object:
        boto3's answer to it is the usual ``BlobNotFound``)."""
        self.fell_back += 1
        count_s3_direct("handed_to_boto3")
        kind = f"{operation}: {what}"
        if not quiet and kind not in self._warned:
            self._warned.add(kind)
            log.warning(
                "S3 %s answered %s to a direct request; sending it through boto3 instead "
                "(logged once per kind and process)",
                operation,
                what,
            )
        return DirectRequestFailed(kind)
