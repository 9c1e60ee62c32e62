"""Connecting to an exchange by hand (``lti-exchange login``): check the URL, then the token.

Each problem is reported as what is wrong with the URL or the token, in the user's words, not
as the HTTP library's text.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

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
    """``GET {base}/api/v1/me`` with the token: who the service says the token is for."""
    try:
        answer = requests.get(
            base + API_PREFIX + "/me",
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.exceptions.SSLError as exc:
        plain = "http://" + base.split("://", 1)[1]
        raise LoginProblem(
            f"{base} does not answer HTTPS (the TLS handshake failed). If the service runs "
            f"without TLS, use {plain}."
        ) from exc
    except requests.ConnectionError as exc:
        raise LoginProblem(
            f"Cannot connect to {base}: is the service running at that URL? Check the host "
            f"and port; after starting it, wait until {base}/healthz answers."
        ) from exc
    except requests.Timeout as exc:
        hint = ""
        if base.startswith("https://"):
            hint = f" If the service runs without TLS, use http://{base.split('://', 1)[1]}."
        raise LoginProblem(f"{base} did not answer within {timeout:g} s.{hint}") from exc
    except requests.RequestException as exc:
        raise LoginProblem(f"Cannot talk to {base} ({exc.__class__.__name__}).") from exc
    body = _json(answer)
    if answer.status_code == 200 and isinstance(body, dict) and "username" in body:
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or "message" not in error:
        hint = ""
        if answer.status_code == 400 and base.startswith("http://"):
            hint = f" If it serves HTTPS, use https://{base.split('://', 1)[1]}."
        raise LoginProblem(
            f"{base} answered HTTP {answer.status_code} but is not an lti-exchange service "
            f"(nothing at {API_PREFIX}/me). Check the URL: scheme, host and port.{hint}"
        )
    message = str(error["message"])
    if "not signed by this service" in message:
        message += (
            " (A token from `lti-exchange token issue` is signed with the keys of the data "
            "directory it was issued with: issue it with the service's LTI_EXCHANGE_DATA_DIR.)"
        )
    raise LoginProblem(f"The exchange at {base} refused the token: {message}")


def _json(answer: requests.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None
