"""The hand-off page: ``templates/handoff.html`` with ``static/handoff.js`` inlined under a nonce.

Both files ship as package data; the script runs under a CSP that allows only that nonce.
"""

from __future__ import annotations

import html
import json
from functools import cache
from importlib.resources import files
from string import Template
from typing import Any

PROTOCOL = 1


@cache
def _resource(name: str) -> str:
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


def script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element (no '<', '>' or '&' left to parse)."""
    return (
        json.dumps(value)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def render_page(nonce: str, config: dict[str, Any]) -> str:
    """The page for one request: its nonce and the script's configuration filled in."""
    return Template(_resource("templates/handoff.html")).substitute(
        nonce=html.escape(nonce, quote=True),
        config=script_json(config),
        script=_resource("static/handoff.js"),
    )


def content_security_policy(nonce: str) -> str:
    """One inline script and style (by nonce), requests only to this server, no framing."""
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'nonce-{nonce}'",
            f"style-src 'nonce-{nonce}'",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
