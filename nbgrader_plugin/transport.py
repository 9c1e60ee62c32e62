"""HTTP/1.1 to the exchange on the standard library's ``http.client``.

One :class:`Connection` per exchange client, kept alive between its requests; the proxy and the
certificate authorities come from the environment, read once per process for the service's URL
and the variables' values (:func:`route_for`):

- ``https_proxy`` / ``http_proxy`` / ``all_proxy`` (either case, lower case first), skipped for
  hosts in ``no_proxy`` (domain suffixes, ``host:port``, IP addresses and CIDR ranges, ``*``).
  HTTPS goes through the proxy in a ``CONNECT`` tunnel; credentials in the proxy's URL are sent as
  ``Proxy-Authorization``. Only ``http://`` proxies can be used.
- TLS is verified against the system's authorities (``SSL_CERT_FILE`` / ``SSL_CERT_DIR``),
  certifi's bundle where it is installed, and ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` (a file
  or a folder), so whatever the plugin trusted when it ran on ``requests`` it still trusts.

``~/.netrc`` is never read: the bearer token is the only credential sent. Redirects are not
followed (the caller turns a 3xx into a message naming the address to configure). A request
costs about a third of the CPU it cost through ``requests`` (``bench/README.md``).
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import os
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

SEND_BLOCK = 1024 * 1024  # bytes handed to the socket per send of a streamed body
MAX_JSON_BYTES = 256 * 1024 * 1024  # a JSON answer larger than this is not read
DRAIN_BYTES = 64 * 1024  # an answer closed with at most this much unread is read to its end
USER_AGENT = "lti-exchange-nbgrader-plugin"

# What the route depends on: the proxy variables (either case), and the CA variables.
ENVIRONMENT_VARIABLES = tuple(
    name
    for base in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    for name in (base, base.upper())
) + ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")

# Failures of the connection itself (nothing or only part of an answer arrived).
NETWORK_ERRORS = (OSError, http.client.HTTPException)
# A kept-alive connection the server closed meanwhile (a request without a body is sent again).
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class TransportError(Exception):
    """The exchange could not be reached, or the connection broke; ``cause`` is the original."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class SettingsError(TransportError):
    """The service URL or the environment's proxy or CA settings will not do (nothing was
    sent); the message says what to change."""


def is_transient(exc: TransportError) -> bool:
    """Whether the same request may get through a moment later: the connection was refused,
    reset or cut, or timed out (a restart, a failover, a proxy in between). A certificate, a
    name that does not resolve or a setting is no better a moment later."""
    cause = exc.cause
    return (
        not isinstance(exc, SettingsError)
        and not isinstance(cause, ssl.SSLError)
        and isinstance(cause, ConnectionError | TimeoutError | http.client.IncompleteRead)
    )


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes | bytearray | memoryview: ...


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization header's value


@dataclass(frozen=True)
class Route:
    """How to reach one service: its scheme, host and port, through which proxy, with what TLS."""

    scheme: str
    host: str
    port: int
    proxy: Proxy | None
    tls: ssl.SSLContext | None

    @property
    def origin(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")


_ROUTES: dict[tuple[str, tuple[str | None, ...]], Route] = {}


def route_for(service_url: str) -> Route:
    """The route to ``service_url`` under the current environment (kept per process)."""
    key = (service_url, tuple(os.environ.get(name) for name in ENVIRONMENT_VARIABLES))
    route = _ROUTES.get(key)
    if route is None:
        if len(_ROUTES) >= 32:  # a process that keeps changing its environment
            _ROUTES.clear()
        route = _ROUTES[key] = _new_route(service_url)
    return route


def _new_route(service_url: str) -> Route:
    parts = urlsplit(service_url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"The exchange URL {service_url!r} is not an http:// or https:// address. Set "
            "c.Exchange.service_url to the service's address, such as https://exchange.example.edu."
        )
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise SettingsError(f"The exchange URL {service_url!r} has an invalid port.") from exc
    host = parts.hostname
    return Route(
        scheme, host, port, _proxy_for(scheme, host, port), _tls() if scheme == "https" else None
    )


def _proxy_for(scheme: str, host: str, port: int) -> Proxy | None:
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or bypasses_proxy(host, port, proxies.get("no", "")):
        return None
    if "://" not in url:
        url = "http://" + url  # as curl and requests read "proxy.example.edu:3128"
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise SettingsError(
            f"The proxy {parts.scheme}://{parts.hostname or ''} set for {scheme} addresses "
            "(HTTPS_PROXY, HTTP_PROXY or ALL_PROXY) is not an http:// proxy, which is all the "
            "exchange plugin can use. Use an http:// proxy, or add the exchange's host to NO_PROXY."
        )
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    try:
        proxy_port = parts.port or 80
    except ValueError as exc:
        raise SettingsError(f"The proxy address {url!r} has an invalid port.") from exc
    return Proxy(parts.hostname, proxy_port, authorization)


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma or space separated) exempts ``host:port`` from the proxy."""
    host = host.lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy.replace(",", " ").split():
        entry = entry.lower()
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.lstrip("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()  # the system's authorities, SSL_CERT_FILE/DIR
    try:
        import certifi

        context.load_verify_locations(cafile=certifi.where())
    except (ImportError, OSError):
        pass
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        bundle = os.environ.get(name)
        if not bundle:
            continue
        try:
            if os.path.isdir(bundle):
                context.load_verify_locations(capath=bundle)
            else:
                context.load_verify_locations(cafile=bundle)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(
                f"${name} names {bundle!r}, which is not a readable certificate bundle "
                f"({exc}). Point it at your institution's CA file (PEM), or unset it.",
                exc,
            ) from exc
    return context


class Response:
    """An answer: status, headers, and the body as a stream (read it, then ``close``)."""

    def __init__(self, raw: http.client.HTTPResponse, connection: Connection) -> None:
        self.raw = raw
        self.status_code = raw.status
        self.headers = raw.headers
        self._connection = connection

    def read(self, size: int | None = -1) -> bytes:
        return self.raw.read(None if size is None or size < 0 else size)

    def read1(self, size: int = -1) -> bytes:
        return self.raw.read1(size)

    def readinto(self, buffer: Any) -> int:
        return self.raw.readinto(buffer)

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` if it is not JSON or is too large)."""
        try:
            data = self.raw.read(MAX_JSON_BYTES + 1)
        except NETWORK_ERRORS as exc:
            raise TransportError(f"the connection broke: {exc.__class__.__name__}", exc) from exc
        if len(data) > MAX_JSON_BYTES:
            raise ValueError("the answer is larger than a JSON answer may be")
        if self.raw.length:  # fewer bytes than its Content-Length: cut off, not "not JSON"
            cut = http.client.IncompleteRead(data, self.raw.length)
            raise TransportError("the connection broke: the answer ended early", cut)
        return json.loads(data)

    def json_or_none(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON (a page from something else)."""
        try:
            return self.json()
        except ValueError:
            return None

    def close(self) -> None:
        """Done with the answer; if its body was not read to the end, the connection (which
        still holds the rest) is closed too."""
        raw = self.raw
        if not raw.isclosed():
            if raw.length is not None and raw.length <= DRAIN_BYTES:
                try:
                    raw.read()  # a short rest: read it, and the connection stays usable
                except NETWORK_ERRORS:
                    self._connection.close()
            else:
                self._connection.close()
        raw.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Connection:
    """One kept-alive HTTP/1.1 connection to a route, opened again when it cannot be reused."""

    def __init__(self, route: Route, timeout: float) -> None:
        self.route = route
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._last: http.client.HTTPResponse | None = None

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | Readable | None = None,
    ) -> Response:
        """Send ``method target`` (``target``: the path and query) and return the answer once
        its head has arrived. A body that is a stream is sent as read, on a fresh connection; a
        request without one is sent again once if a kept-alive connection turns out closed."""
        replayable = body is None or isinstance(body, bytes)
        reused = self._reusable()
        if reused and not replayable:
            self.close()
            reused = False
        while True:
            try:
                return self._send(method, target, headers, body)
            except NETWORK_ERRORS as exc:
                self.close()
                if not (reused and replayable and isinstance(exc, _STALE)):
                    raise TransportError(_describe(exc), exc) from exc
                reused = False  # once more, on a fresh connection

    def _send(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | Readable | None
    ) -> Response:
        connection = self._connection or self._open()
        self._connection = connection
        route = self.route
        if route.proxy is not None and route.tls is None:
            target = route.origin + target  # a plain-HTTP proxy takes the absolute URL
        connection.putrequest(method, target, skip_accept_encoding=True)
        all_headers = {"User-Agent": USER_AGENT, **headers}
        if route.proxy is not None and route.tls is None and route.proxy.authorization:
            all_headers["Proxy-Authorization"] = route.proxy.authorization
        if body is not None and not any(k.lower() == "content-length" for k in all_headers):
            if not isinstance(body, bytes):
                raise ValueError("a streamed body needs a Content-Length header")
            all_headers["Content-Length"] = str(len(body))
        for name, value in all_headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        try:
            if isinstance(body, bytes):
                connection.send(body)
            elif body is not None:
                while data := body.read(SEND_BLOCK):
                    connection.send(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The server may have answered before reading the whole body (a 413 for an upload
            # over its limit) and closed: that answer is what the user needs to see.
            try:
                raw = connection.getresponse()
            except NETWORK_ERRORS:
                raise exc from None
        else:
            raw = connection.getresponse()
        self._last = raw
        return Response(raw, self)

    def _open(self) -> http.client.HTTPConnection:
        route = self.route
        host, port = (
            (route.proxy.host, route.proxy.port) if route.proxy else (route.host, route.port)
        )
        connection: http.client.HTTPConnection
        if route.tls is not None:
            connection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=route.tls, blocksize=SEND_BLOCK
            )
            if route.proxy is not None:
                tunnel_headers = {"User-Agent": USER_AGENT}
                if route.proxy.authorization:
                    tunnel_headers["Proxy-Authorization"] = route.proxy.authorization
                connection.set_tunnel(route.host, route.port, headers=tunnel_headers)
        else:
            connection = http.client.HTTPConnection(
                host, port, timeout=self.timeout, blocksize=SEND_BLOCK
            )
        return connection

    def _reusable(self) -> bool:
        """Whether the open connection may carry the next request (its last answer was read to
        the end and did not announce a close)."""
        last = self._last
        if self._connection is None:
            return False
        if last is not None and (not last.isclosed() or last.will_close):
            self.close()
            return False
        return self._connection.sock is not None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._last = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _STALE):
        return f"the connection broke: {exc.__class__.__name__}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the exchange's TLS certificate is not trusted ({exc.verify_message}). If your "
            "institution uses its own certificate authority, set REQUESTS_CA_BUNDLE or "
            "SSL_CERT_FILE to its bundle (PEM)"
        )
    if isinstance(exc, OSError) and exc.__class__ is OSError and "Tunnel connection" in str(exc):
        return f"the proxy refused the tunnel ({exc}); check HTTPS_PROXY and NO_PROXY"
    return exc.__class__.__name__
