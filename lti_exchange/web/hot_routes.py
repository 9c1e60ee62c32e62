"""The deadline's two requests, fetch and submit, served without Flask's per-request machinery.

Flask's request context, routing, hooks and ``Response`` object cost more than the fetch
itself: 0.6 ms of a gunicorn worker's CPU per live fetch, one at a time (``bench/stack_floor.py``:
2.30-2.40 ms with them, 1.70-1.80 without, beside 0.95-1.05 ms for ``sendfile`` of the same
MiB), on a service whose target is 3 ms per request. :class:`HotRoutes` wraps the Flask app
(inside the metrics middleware and ``ProxyFix``) and serves

- ``GET /api/v1/courses/<course>/assignments/<assignment>/archive`` (a fetch), and
- ``POST /api/v1/courses/<course>/assignments/<assignment>/submissions`` (a submission)

itself when the path's segments are plain (none empty, no control characters: Flask answers
those), with the same services under an app context (``g``: the session, the token's claims,
the query count; the app context's teardown closes the session), the Flask views' own caller
and submission code (``web.bearer.caller_of``, ``api.submissions.store_submission``; the body
checked by ``api.common.upload_stream``, as the view's ``archive_body``), and the headers Flask's
hooks add: the request id, the security headers
(``lti.headers.DEFAULT_HEADERS``), ``X-Query-Count`` where enabled, and the metrics' labels
(``web.metrics.note_request``). A request that fails is answered by Flask
itself: its error handlers and after-request hooks run in a request context built from the
same environ, so every refusal is Flask's, byte for byte. Every other request (HEAD, other
routes) goes straight to Flask. ``tests/functional/test_hot_routes.py`` holds the two paths
to the same answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, g

from lti_exchange.api.common import (
    ANY_ROLE,
    REPLAYED_HEADER,
    blob_body,
    blob_headers,
    context,
    idempotency_key,
    upload_stream,
)
from lti_exchange.api.submissions import store_submission
from lti_exchange.app_objects import AppObjects
from lti_exchange.logging_setup import request_id_from, set_request_id
from lti_exchange.lti.headers import DEFAULT_HEADERS
from lti_exchange.services.assignments import AssignmentService, release_to_fetch
from lti_exchange.services.submissions import submit_target
from lti_exchange.web.bearer import caller_of
from lti_exchange.web.current import get_session
from lti_exchange.web.metrics import note_request
from lti_exchange.web.request_id import HEADER as REQUEST_ID_HEADER

Answer = tuple[str, list[tuple[str, str]], Iterable[bytes]]
_SEGMENT = r"([^/\x00-\x1f\x7f]+)"
_ASSIGNMENT = rf"/api/v1/courses/{_SEGMENT}/assignments/{_SEGMENT}"
FETCH = re.compile(rf"{_ASSIGNMENT}/archive")
SUBMIT = re.compile(rf"{_ASSIGNMENT}/submissions")


class HotRoutes:
    """WSGI middleware in front of the Flask app: fetch and submit served here (module
    docstring), everything else passed on."""

    def __init__(self, flask_app: Flask, objects: AppObjects) -> None:
        self.flask_app = flask_app
        self.app = flask_app.wsgi_app  # the next layer: Flask's own WSGI entry
        self.objects = objects
        self.expose_query_count = objects.settings.expose_query_count
        # PostgreSQL: a fetch's one read and one insert each in their own implicit transaction,
        # 2 round trips to the server instead of 4 (psycopg sends BEGIN and COMMIT on their own)
        self.fetch_in_autocommit = objects.engine.dialect.name == "postgresql"
        self.routes: dict[str, tuple[re.Pattern[str], Callable[..., Answer], str]] = {
            "GET": (FETCH, self._fetch, _rule(flask_app, "api.download_assignment")),
            "POST": (SUBMIT, self._submit, _rule(flask_app, "api.submit")),
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        route = self.routes.get(environ.get("REQUEST_METHOD", ""))
        match = route[0].fullmatch(environ.get("PATH_INFO", "")) if route else None
        if route is None or match is None or (route[0] is FETCH and _has_body(environ)):
            return self.app(environ, start_response)  # a GET with a body: Flask bounds it
        _, serve, rule = route
        request_id = request_id_from(environ.get(_REQUEST_ID_KEY))
        set_request_id(request_id)
        app_context = self.flask_app.app_context()
        app_context.push()
        try:
            g.request_id = request_id
            try:
                status, headers, body = serve(environ, *map(_wsgi_text, match.groups()))
            except Exception as exc:  # noqa: BLE001 - answered as Flask answers it
                return self._fail(environ, start_response, exc)
            note_request(environ, rule, request_id, g.get("token_claims"))
            headers.extend(DEFAULT_HEADERS)  # in the order Flask's after-request hooks add them
            if self.expose_query_count:
                headers.append(("X-Query-Count", str(g.get("query_count", 0))))
            headers.append((REQUEST_ID_HEADER, request_id))
            start_response(status, headers)
            return body
        finally:
            try:
                app_context.pop()  # teardown: the session closed
            finally:
                set_request_id("-")

    def _fail(
        self, environ: dict[str, Any], start_response: Callable[..., Any], error: Exception
    ) -> Any:
        """Flask's answer to ``error``, as ``Flask.wsgi_app`` would give it for this request
        (the request context joins the app context already pushed)."""
        app = self.flask_app
        with app.request_context(environ):
            try:
                response = app.finalize_request(app.handle_user_exception(error))
            except Exception as unhandled:  # noqa: BLE001 - Flask's own last resort
                response = app.handle_exception(unhandled)
            return response(environ, start_response)

    def _fetch(self, environ: dict[str, Any], course: str, name: str) -> Answer:
        """``api.assignments.download_assignment`` for a GET. Its only write is the "fetched"
        event, one statement: on PostgreSQL it runs in autocommit (``fetch_in_autocommit``)."""
        if self.fetch_in_autocommit:
            get_session().connection(execution_options=_AUTOCOMMIT)
        caller = caller_of(
            environ.get("HTTP_AUTHORIZATION", ""), course, ANY_ROLE, release_to_fetch(name)
        )
        release, handle = AssignmentService(context()).open_current_release(caller, name)
        try:
            version = str(release.version)
            headers = blob_headers(handle, release.size, release.sha256, X_Release_Version=version)
            return "200 OK", headers, blob_body(environ, handle)
        except BaseException:
            handle.close()
            raise

    def _submit(self, environ: dict[str, Any], course: str, name: str) -> Answer:
        """``api.submissions.submit``."""
        caller = caller_of(
            environ.get("HTTP_AUTHORIZATION", ""), course, ANY_ROLE, submit_target(name)
        )
        key = idempotency_key(environ)
        upload = upload_stream(environ, self.objects)
        answer, replayed = store_submission(caller, name, upload, key)
        json: Any = self.flask_app.json.response(answer)  # jsonify's bytes and type
        payload = json.get_data()
        headers = [("Content-Type", json.content_type or ""), ("Content-Length", str(len(payload)))]
        if replayed:  # the first attempt's submission, as its 201 said
            return "200 OK", [*headers, (REPLAYED_HEADER, "true")], [payload]
        return "201 CREATED", headers, [payload]


_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}
_REQUEST_ID_KEY = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")


def _has_body(environ: dict[str, Any]) -> bool:
    """Whether the request declares a body (a length other than 0, or chunks)."""
    length = environ.get("CONTENT_LENGTH", "")
    return length not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ


def _wsgi_text(segment: str) -> str:
    """A path segment as Flask routes it: WSGI hands the URL's bytes over as Latin-1 text,
    Werkzeug reads them as UTF-8 (``%C3%A9`` is ``é``, in names and in error messages)."""
    return segment if segment.isascii() else segment.encode("latin-1").decode("utf-8", "replace")


def _rule(app: Flask, endpoint: str) -> str:
    """The URL rule of ``endpoint``: the route label Flask's requests get in the metrics."""
    return next(rule.rule for rule in app.url_map.iter_rules(endpoint))
