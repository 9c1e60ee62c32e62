"""Connecting to an exchange by hand (``lti-exchange login``): check the URL, then the token.

Each problem is reported as what is wrong with the URL or the token, in the user's words, not
as the HTTP library's text.
"""

from __future__ import annotations

import http.client
import ssl
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nbgrader_plugin.transport import Connection, SettingsError, TransportError, route_for

API_PREFIX = "/api/v1"


class LoginProblem(ValueError):
    """The URL or the token will not do; ``str(problem)`` says why and what to do."""


def service_base_url(url: str) -> str:
    """The service's base URL from what the user typed, or ``LoginProblem``."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LoginProblem(
            f"{url!r} is not an http:// or https:// URL: give the whole address, e.g. "
            f"http://{text.split('://')[-1].strip('/') or '127.0.0.1:8000'}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise LoginProblem(f"{url!r} has an invalid port ({exc}).") from exc
    if parts.query or parts.fragment or parts.username is not None:
        raise LoginProblem(f"{url!r} must not carry a query, a fragment or credentials.")
    path = parts.path.rstrip("/")
    if path == API_PREFIX or path.startswith(API_PREFIX + "/") or path.endswith(API_PREFIX):
        base = urlunsplit((parts.scheme, parts.netloc, path[: path.index(API_PREFIX)], "", ""))
        raise LoginProblem(
            f"{url!r} points into the API; give the service's own URL, without {API_PREFIX}: {base}"
        )
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def check_login(base: str, access_token: str, timeout: float = 30.0) -> dict[str, Any]:
    """``GET {base}/api/v1/me`` with the token: who the service says the token is for.

    Sent the way the exchange classes send their requests (``transport``: the same proxy and
    certificate settings), so a login that works means the plugin will reach the service too.
    """
    try:
        status, body = ask_me(base, access_token, timeout)
    except SettingsError as exc:
        raise LoginProblem(str(exc)) from exc
    except TransportError as exc:
        raise _unreachable(base, timeout, exc.cause) from exc
    if status == 200 and isinstance(body, dict) and "username" in body:
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or "message" not in error:
        hint = ""
        if status == 400 and base.startswith("http://"):
            hint = f" If it serves HTTPS, use https://{base.split('://', 1)[1]}."
        raise LoginProblem(
            f"{base} answered HTTP {status} but is not an lti-exchange service "
            f"(nothing at {API_PREFIX}/me). Check the URL: scheme, host and port.{hint}"
        )
    message = str(error["message"])
    if "not signed by this service" in message:
        message += (
            " (A token from `lti-exchange token issue` is signed with the keys of the data "
            "directory it was issued with: issue it with the service's LTI_EXCHANGE_DATA_DIR.)"
        )
    raise LoginProblem(f"The exchange at {base} refused the token: {message}")


def ask_me(base: str, access_token: str, timeout: float) -> tuple[int, Any]:
    """``GET {base}/api/v1/me`` on a connection of its own: the status and the parsed JSON
    answer (None when it is not JSON). ``TransportError`` when the service cannot be reached."""
    connection = Connection(route_for(base), timeout)
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
    try:
        with connection.request("GET", urlsplit(base).path + API_PREFIX + "/me", headers) as answer:
            return answer.status_code, answer.json_or_none()
    finally:
        connection.close()


def _unreachable(base: str, timeout: float, cause: BaseException | None) -> LoginProblem:
    """What went wrong on the way to ``base``, in the user's words."""
    plain = "http://" + base.split("://", 1)[1]
    if isinstance(cause, ssl.SSLCertVerificationError):
        return LoginProblem(
            f"The certificate of {base} is not trusted ({cause.verify_message}). If your "
            "institution uses its own certificate authority, set REQUESTS_CA_BUNDLE or "
            "SSL_CERT_FILE to its bundle (PEM), then try again."
        )
    if isinstance(cause, ssl.SSLError):
        return LoginProblem(
            f"{base} does not answer HTTPS (the TLS handshake failed). If the service runs "
            f"without TLS, use {plain}."
        )
    if isinstance(cause, TimeoutError):
        hint = f" If the service runs without TLS, use {plain}." if base.startswith("https") else ""
        return LoginProblem(f"{base} did not answer within {timeout:g} s.{hint}")
    if isinstance(cause, OSError) and not isinstance(cause, http.client.RemoteDisconnected):
        return LoginProblem(
            f"Cannot connect to {base}: is the service running at that URL? Check the host "
            f"and port; after starting it, wait until {base}/healthz answers."
        )
    name = cause.__class__.__name__ if cause is not None else "no answer"
    return LoginProblem(f"Cannot talk to {base} ({name}).")
