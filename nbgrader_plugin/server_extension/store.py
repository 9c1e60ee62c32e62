"""Storing handed-off tokens: check the posted body, confirm the token with the service
(``GET /api/v1/me``), then write it to the user's token store (the one ``lti-exchange login``
writes and the nbgrader plugin reads)."""

from __future__ import annotations

import re
import threading
from typing import Any, Literal, overload
from urllib.parse import urlsplit

from nbgrader_plugin.connect import ask_me
from nbgrader_plugin.server_extension.settings import LtiExchangeHandoff, normalise_url
from nbgrader_plugin.tokens import TokenEntry
from nbgrader_plugin.transport import TransportError

MAX_TOKEN_CHARS = 8 * 1024
MAX_URL_CHARS = 2 * 1024
MAX_BODY_BYTES = 32 * 1024
# JWTs are base64url and dots; refresh tokens are URL-safe random strings. Nothing else, and
# never whitespace or control characters (they would end up in an HTTP header).
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")

# One process writes the token store at a time (TokenStore.save reads, merges and replaces).
_store_lock = threading.Lock()


class HandoffRefused(Exception):
    """A request the extension refuses; ``str(error)`` is a message for the user."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def store_tokens(handoff: LtiExchangeHandoff, body: Any) -> dict[str, Any]:
    """Check ``body`` and its token with the service, then save it. Runs in a thread."""
    access, refresh, service_url = validate_body(body)
    configured, store = handoff.exchange_settings()
    if configured and service_url != configured:
        raise HandoffRefused(
            400,
            f"These tokens are for the exchange at {service_url}, but this notebook server "
            f"uses the exchange at {configured}. Launch from the LMS course that uses this "
            "server, or ask your administrator to check c.Exchange.service_url.",
            "wrong_service",
        )
    me = verify(service_url, access, handoff.verify_timeout)
    try:
        entry = TokenEntry.from_access_token(access, service_url, refresh)
    except ValueError as exc:
        raise HandoffRefused(400, f"That is not an access token ({exc}).", "bad_token") from exc
    try:
        with _store_lock:
            store.save(entry)
    except OSError as exc:
        raise HandoffRefused(
            500,
            f"Cannot write the token store {store.path} ({exc.strerror or exc}).",
            "store_failed",
        ) from exc
    handoff.log.info(
        "lti-exchange: stored tokens for course %s (user %s, role %s) in %s",
        entry.course_id,
        me.get("username"),
        me.get("role"),
        store.path,
    )
    return {
        "stored": True,
        "course_id": me.get("course_id") or entry.course_id,
        "course_title": me.get("course_title"),
        "username": me.get("username") or entry.username,
        "role": me.get("role") or entry.role,
        "service_url": service_url,
        "token_file": str(store.path),
    }


def verify(service_url: str, access: str, timeout: float) -> dict[str, Any]:
    """``GET {service_url}/api/v1/me`` with the token: the service's word on who it is (sent
    the way the exchange classes send theirs: the same proxy and certificate settings)."""
    try:
        status, me = ask_me(service_url, access, timeout)
    except TransportError as exc:
        raise HandoffRefused(
            502,
            f"Cannot reach the exchange at {service_url} ({str(exc).rstrip('.')}). "
            "Try again in a moment.",
            "service_unreachable",
        ) from exc
    if status == 200:
        if isinstance(me, dict):
            return me
        raise HandoffRefused(
            502, f"The exchange at {service_url} gave an unreadable answer.", "bad_answer"
        )
    message, code = service_error(status, me)
    if 400 <= status < 500:
        raise HandoffRefused(400, f"The exchange refused the token: {message}", code)
    raise HandoffRefused(
        502, f"The exchange at {service_url} could not check the token: {message}", code
    )


def service_error(status: int, body: Any) -> tuple[str, str | None]:
    """The message and code of the service's error answer (``body``: its parsed JSON)."""
    try:
        error = body["error"]
        return str(error["message"]), error.get("code")
    except (KeyError, TypeError):
        return f"HTTP {status}", None


@overload
def _token(body: dict, name: str, required: Literal[True]) -> str: ...
@overload
def _token(body: dict, name: str, required: bool) -> str | None: ...
def _token(body: dict, name: str, required: bool) -> str | None:
    value = body.get(name)
    if value is None or (value == "" and not required):
        if required:
            raise HandoffRefused(400, f"'{name}' is missing.", "bad_request")
        return None
    if not isinstance(value, str):
        raise HandoffRefused(400, f"'{name}' must be a string.", "bad_request")
    if len(value) > MAX_TOKEN_CHARS:
        raise HandoffRefused(
            400, f"'{name}' is longer than {MAX_TOKEN_CHARS} characters.", "bad_request"
        )
    if not TOKEN_CHARS.fullmatch(value):
        raise HandoffRefused(400, f"'{name}' is not a token.", "bad_request")
    return value


def validate_body(body: Any) -> tuple[str, str | None, str]:
    """``(access_token, refresh_token, service_url)`` from a JSON body, or ``HandoffRefused``."""
    if not isinstance(body, dict):
        raise HandoffRefused(400, "The body must be a JSON object.", "bad_request")
    access = _token(body, "access_token", required=True)
    refresh = _token(body, "refresh_token", required=False)
    url = body.get("service_url")
    if not isinstance(url, str) or not url.strip():
        raise HandoffRefused(400, "'service_url' is missing.", "bad_request")
    if len(url) > MAX_URL_CHARS:
        raise HandoffRefused(
            400, f"'service_url' is longer than {MAX_URL_CHARS} characters.", "bad_request"
        )
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise HandoffRefused(400, "'service_url' is not a URL.", "bad_request") from exc
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or any(c.isspace() or ord(c) < 32 for c in url.strip())
    ):
        raise HandoffRefused(
            400,
            "'service_url' must be an http or https URL without credentials, query or fragment.",
            "bad_request",
        )
    return access, refresh, normalise_url(url)
