"""Security headers: who may frame our pages, referrers, caching, MIME sniffing.

Pages that hold a token or act for the user inside the LMS (the landing page, the deep-link
chooser, the deep-link response form, the LTI error page shown in the LMS frame) may be framed
only by the registered LMS origins: each registration's issuer and OIDC login URL origins,
plus the operator's ``LTI_EXCHANGE_FRAME_ORIGINS``. Every other response (the API, JSON errors)
may not be framed at all. ``X-Content-Type-Options: nosniff`` goes on everything.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from lti_exchange.models import LtiRegistration

CSP = "Content-Security-Policy"
NO_FRAMING = "frame-ancestors 'none'"


def origin(url: str | None) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, else None (never a wildcard)."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    host = parts.hostname
    if any(c in host for c in " ;,*'\"") or not host.isascii():
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def configured_origins(setting: str) -> list[str]:
    """The operator's extra frame origins (comma- or space-separated URLs)."""
    found = (origin(item) for item in setting.replace(",", " ").split())
    return [item for item in found if item]


def registration_origins(row: LtiRegistration) -> list[str]:
    found = (origin(row.issuer), origin(row.auth_login_url))
    return [item for item in found if item]


def lms_frame_origins(
    session: Session, setting: str, registration: LtiRegistration | None = None
) -> list[str]:
    """Who may frame an LMS-facing page: one registration's origins when we know which LMS
    launched, else every registration's; plus the configured ones. Sorted, no duplicates."""
    rows = (
        [registration]
        if registration is not None
        else session.execute(select(LtiRegistration)).scalars().all()
    )
    found = {o for row in rows for o in registration_origins(row)}
    found.update(configured_origins(setting))
    return sorted(found)


def lms_page(response: Response, origins: list[str]) -> Response:
    """Headers for a page the LMS frames: framing by ``origins`` only, no referrer, no cache."""
    ancestors = " ".join(origins) if origins else "'none'"
    response.headers[CSP] = f"frame-ancestors {ancestors}; base-uri 'none'; object-src 'none'"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    if not origins:
        response.headers["X-Frame-Options"] = "DENY"
    return response


# What every answer carries unless it set its own (a page the LMS frames sets its framing).
ALWAYS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"))
NOT_FRAMED = ((CSP, NO_FRAMING), ("X-Frame-Options", "DENY"))
DEFAULT_HEADERS = ALWAYS + NOT_FRAMED  # an answer that sets none of them (``web.hot_routes``)


def _everywhere(response: Response) -> Response:
    for name, value in ALWAYS:
        response.headers.setdefault(name, value)
    if CSP not in response.headers:
        for name, value in NOT_FRAMED:
            response.headers[name] = value
    return response


def install_default_headers(app: Flask) -> None:
    """Add the defaults to every response of the app (pages set their own framing first)."""
    app.after_request(_everywhere)
