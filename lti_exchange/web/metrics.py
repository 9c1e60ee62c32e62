"""``GET /metrics`` (Prometheus text format) and the per-request measurements behind it, plus the
per-request JSON log line (``LTI_EXCHANGE_LOG_FORMAT=json``).

A WSGI middleware around the whole app times each request until its last byte is sent (streamed
archives included), counts the body bytes read and sent, and labels everything by the Flask URL
rule (``/api/v1/courses/<course_id>/...``), never the raw path, so the number of series stays
bounded. The JSON log line has both: ``route`` and ``path``, the path as the client sent it
(still percent-encoded, as gunicorn's text access log writes it) without the query string, which
may hold secrets and is never logged. Under gunicorn the counts of all workers add up
(prometheus-client's multiprocess mode, set up by ``config/gunicorn.conf.py`` and ``serve``).
``/metrics`` asks for no token: serve it on the internal network only (``config/nginx.conf``
does not pass it on).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from lti_exchange.models import GradeOutbox
from lti_exchange.observability import (
    HTTP_BYTES_IN,
    HTTP_BYTES_OUT,
    HTTP_LATENCY,
    HTTP_REQUESTS,
    LAUNCH_OUTCOMES,
    LAUNCHES,
    start_counting,
)
from lti_exchange.serving.access_log import raw_path

log = logging.getLogger(__name__)
request_log = logging.getLogger("lti_exchange.request")
request_log.setLevel(logging.INFO)  # one line per request whatever the service's log level

_NOTES = "lti_exchange.observed"  # environ key: what the Flask hooks learned about the request
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LAUNCH_RULES = frozenset({"/lti/launch", "/lti/launch/bind"})
UNMATCHED = "<unmatched>"


def request_path(environ: dict[str, Any]) -> str:
    """The request's path as sent (percent-encoded), never its query string.

    Gunicorn and Werkzeug keep the request target as sent (``RAW_URI``/``REQUEST_URI``);
    elsewhere the decoded ``PATH_INFO`` is encoded again.
    """
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not target:
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        target = quote(path.encode("latin-1", "replace"), safe="/:@!$&'()*+,;=-._~")
    return raw_path(target)


def mark_launch(outcome: str) -> None:
    """Called by the launch views: how this launch ended (see ``observability.LAUNCHES``)."""
    assert outcome in LAUNCH_OUTCOMES, outcome
    g.launch_outcome = outcome


class OutboxCollector:
    """Grade outbox depth and the age of its oldest entry, by one query at scrape time."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.engine.connect() as connection:
                depth, oldest = connection.execute(
                    select(func.count(GradeOutbox.id), func.min(GradeOutbox.created_at))
                ).one()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail with the database
            log.warning("metrics: the grade outbox could not be read: %s", exc)
            return
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "lti_exchange_grade_outbox_entries",
            "Grades waiting in the outbox to be sent to the LMS (retries included).",
            value=depth,
        )
        yield GaugeMetricFamily(
            "lti_exchange_grade_outbox_oldest_age_seconds",
            "Age of the oldest grade waiting in the outbox (0 when it is empty).",
            value=max(age, 0.0),
        )


def _scrape(outbox: CollectorRegistry) -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry  # one process: its own counts
    body = generate_latest(registry) + generate_latest(outbox)
    response = Response(body, mimetype=None)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    response.headers["Cache-Control"] = "no-store"
    return response


def note_request(environ: dict[str, Any], route: str, request_id: str | None, claims: Any) -> None:
    """What the middleware labels and logs a request with: its route rule, its id and, once
    its token was verified, who made it (the Flask hook below, and ``web.hot_routes``)."""
    notes = environ.setdefault(_NOTES, {})
    notes["route"] = route
    notes["request_id"] = request_id
    if claims is not None:
        notes["user"] = claims.username
        notes["course"] = claims.course_code
        notes["org_id"] = claims.org_id


def _note(response: Response) -> Response:
    """after_request: what the middleware labels and logs (route, ids), read from Flask."""
    rule = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    note_request(request.environ, rule, g.get("request_id"), g.get("token_claims"))
    if rule in _LAUNCH_RULES:
        outcome = g.get("launch_outcome") or (
            "refused" if response.status_code >= 400 else "unbound"
        )
        LAUNCHES.labels(outcome).inc()
    return response


class _CountingInput:
    """``wsgi.input`` that counts the bytes the app reads."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.count = 0

    def read(self, *args: Any) -> bytes:
        data = self._stream.read(*args)
        self.count += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        """Straight into the caller's buffer when the server's input can (the upload path)."""
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            got = readinto(buffer) or 0
        else:
            with memoryview(buffer) as view:
                data = self._stream.read(len(view))
                got = len(data)
                view[:got] = data
        self.count += got
        return got

    def readline(self, *args: Any) -> bytes:
        data = self._stream.readline(*args)
        self.count += len(data)
        return data

    def readlines(self, *args: Any) -> list[bytes]:
        lines = self._stream.readlines(*args)
        self.count += sum(len(line) for line in lines)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            self.count += len(chunk)
            yield chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Counted:
    """The response iterable, counting what is sent and finishing the measurement at close."""

    def __init__(self, inner: Iterable[bytes], finish: Callable[[int | None], None]) -> None:
        self._inner = inner
        self._finish = finish
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._finish(self._sent)


class _Series:
    """The labelled children of the per-request metrics, looked up once per label set (the
    label sets are bounded: URL rules × methods × statuses) instead of by ``labels()`` each time."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}
        self._bytes_in: dict[str, Any] = {}
        self._bytes_out: dict[str, Any] = {}

    def record(
        self, route: str, method: str, status: int, duration: float, bytes_in: int, bytes_out: int
    ) -> None:
        key = (route, method, status)
        requests = self._requests.get(key)
        if requests is None:
            requests = self._requests[key] = HTTP_REQUESTS.labels(route, method, str(status))
        requests.inc()
        latency = self._latency.get(key[:2])
        if latency is None:
            latency = self._latency[key[:2]] = HTTP_LATENCY.labels(route, method)
        latency.observe(duration)
        if bytes_in:
            counter = self._bytes_in.get(route)
            if counter is None:
                counter = self._bytes_in[route] = HTTP_BYTES_IN.labels(route)
            counter.inc(bytes_in)
        if bytes_out:
            counter = self._bytes_out.get(route)
            if counter is None:
                counter = self._bytes_out[route] = HTTP_BYTES_OUT.labels(route)
            counter.inc(bytes_out)


class ObservedApp:
    """WSGI middleware: metrics and (JSON format) the request log line for every request."""

    def __init__(self, app: Callable[..., Any], json_log: bool) -> None:
        self.app = app
        self.json_log = json_log
        self.series = _Series()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        body = _CountingInput(environ["wsgi.input"]) if "wsgi.input" in environ else None
        if body is not None:
            environ["wsgi.input"] = body
        answer: dict[str, Any] = {"status": 500, "length": None}

        def observed_start(status: str, headers: list[tuple[str, str]], exc_info=None):
            answer["status"] = int(status.split(" ", 1)[0])
            for name, value in headers:
                if name.lower() == "content-length" and value.isdigit():
                    answer["length"] = int(value)
            return start_response(status, headers, exc_info)

        def finish(sent: int | None) -> None:
            self._record(environ, answer, body, sent, time.perf_counter() - started)

        try:
            result = self.app(environ, observed_start)
        except BaseException:
            finish(0)
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            # Keep the server's sendfile path: count the announced length when it closes.
            inner_close = getattr(result, "close", None)

            def close() -> None:
                try:
                    if inner_close is not None:
                        inner_close()
                finally:
                    finish(None)

            result.close = close  # type: ignore[attr-defined]
            return result
        return _Counted(result, finish)

    def _record(
        self,
        environ: dict[str, Any],
        answer: dict[str, Any],
        body: _CountingInput | None,
        sent: int | None,
        duration: float,
    ) -> None:
        try:
            notes = environ.get(_NOTES, {})
            route = notes.get("route", UNMATCHED)
            method = environ.get("REQUEST_METHOD", "")
            method = method if method in _METHODS else "OTHER"
            status = answer["status"]
            bytes_out = sent if sent is not None else (answer["length"] or 0)
            bytes_in = body.count if body is not None else 0
            self.series.record(route, method, status, duration, bytes_in, bytes_out)
            if self.json_log:
                fields = {
                    "request_id": notes.get("request_id"),
                    "method": method,
                    "route": route,
                    "path": request_path(environ),
                    "status": status,
                    "duration_ms": round(duration * 1000, 3),
                    "bytes_in": bytes_in,
                    "bytes_out": bytes_out,
                }
                for key in ("user", "course", "org_id"):
                    if key in notes:
                        fields[key] = notes[key]
                request_log.info("request", extra={"fields": fields})
        except Exception:  # noqa: BLE001 - measuring must never break an answer
            log.exception("metrics: recording a request failed")


def install_metrics(app: Flask, engine, log_format: str) -> None:
    """``GET /metrics``, the hooks that label requests, and the measuring middleware (call last
    in ``create_app``, so it wraps every other middleware)."""
    start_counting()
    outbox = CollectorRegistry(auto_describe=False)
    outbox.register(OutboxCollector(engine))
    app.add_url_rule("/metrics", "metrics", lambda: _scrape(outbox), methods=["GET"])
    app.after_request(_note)
    app.wsgi_app = ObservedApp(app.wsgi_app, json_log=log_format == "json")  # type: ignore[method-assign]
