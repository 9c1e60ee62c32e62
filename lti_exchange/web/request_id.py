"""Give every request an id: a sane incoming ``X-Request-Id`` or a new one, echoed back."""

from __future__ import annotations

from flask import Flask, Response, g, request

from lti_exchange.logging_setup import current_request_id, request_id_from, set_request_id

HEADER = "X-Request-Id"


def _start() -> None:
    g.request_id = request_id_from(request.headers.get(HEADER))
    set_request_id(g.request_id)


def _answer(response: Response) -> Response:
    response.headers[HEADER] = g.get("request_id") or current_request_id()
    return response


def _end(_exc: BaseException | None = None) -> None:
    set_request_id("-")


def install_request_id(app: Flask) -> None:
    """Register the hooks; the id is set before any other ``before_request`` hook runs."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_answer)
    app.teardown_request(_end)
