"""Fetch and submit are served by ``web.hot_routes`` without Flask's per-request machinery; the
answers must be Flask's own: every refusal byte for byte, a success with the same headers and
body. Each request is sent twice through the same app, in this process: once to the hot routes
(the app's WSGI entry), once straight to the Flask app behind them."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from sqlalchemy import event
from werkzeug.test import EnvironBuilder

from lti_exchange import create_app
from lti_exchange.config import load_settings
from lti_exchange.web.hot_routes import HotRoutes
from lti_exchange.web.metrics import _NOTES
from tests.support import (
    NOTEBOOK,
    TAR,
    add_unreleased_assignment,
    make_tar,
    make_tgz,
    release_as_teacher,
)

REQUEST_ID = "hot-routes-test"


class Answer:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes, notes: dict):
        self.status, self.headers, self.body, self.notes = status, headers, body, notes

    def json(self) -> Any:
        return json.loads(self.body)


class TwoWays:
    """The app in this process: ``hot`` through its WSGI entry, ``flask`` past the hot routes."""

    def __init__(self, server) -> None:
        self.server = server
        self.app = create_app(load_settings(server.env))
        layer = self.app.wsgi_app
        while not isinstance(layer, HotRoutes):  # past the metrics middleware (and ProxyFix)
            layer = layer.app  # type: ignore[attr-defined]
        self.hot_routes = layer
        self.flask_calls = 0
        inner = layer.app

        def counted(environ, start_response):
            self.flask_calls += 1
            return inner(environ, start_response)

        layer.app = counted

    def hot(self, method: str, path: str, **kwargs) -> Answer:
        """Through the app's WSGI entry; fails if the request reached Flask's routing."""
        before = self.flask_calls
        answer = self._call(method, path, **kwargs)
        assert self.flask_calls == before, f"{method} {path} was handed to Flask"
        return answer

    def flask(self, method: str, path: str, **kwargs) -> Answer:
        """The same entry with the hot routes' table empty: Flask serves it."""
        routes, self.hot_routes.routes = self.hot_routes.routes, {}
        try:
            return self._call(method, path, **kwargs)
        finally:
            self.hot_routes.routes = routes

    def _call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> Answer:
        sent = {"X-Request-Id": REQUEST_ID, **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        environ = EnvironBuilder(
            path=path,
            method=method,
            headers=sent,
            input_stream=io.BytesIO(body) if body is not None else None,
        ).get_environ()
        if length is not None:  # a declared length that is not the body's (EnvironBuilder's is)
            environ["CONTENT_LENGTH"] = str(length)
        got: list[Any] = []

        def start_response(status, response_headers, exc_info=None):
            got.extend([status, list(response_headers)])

        result = self.app.wsgi_app(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return Answer(got[0], got[1], data, dict(environ.get(_NOTES, {})))


@pytest.fixture
def two_ways(live_server):
    both = TwoWays(live_server)
    yield both
    both.app.extensions["lti_exchange"].engine.dispose()


@pytest.fixture
def ps1(live_server, course):
    """``course`` with a released 'ps1' and a 'draft' that was never released."""
    release_as_teacher(live_server, course, "ps1", {"ps1.ipynb": NOTEBOOK, "data.txt": b"x" * 300})
    add_unreleased_assignment(live_server, course, "draft")
    return course


def same_refusal(two_ways: TwoWays, method: str, path: str, status: int, **kwargs) -> None:
    hot, flask = two_ways.hot(method, path, **kwargs), two_ways.flask(method, path, **kwargs)
    assert hot.status.startswith(str(status)), (hot.status, hot.body)
    assert (hot.status, hot.headers, hot.body) == (flask.status, flask.headers, flask.body)
    assert hot.json()["error"]["status"] == status
    assert hot.notes == flask.notes  # the metrics' route label and ids


def archive(course: str, name: str = "ps1") -> str:
    return f"/api/v1/courses/{course}/assignments/{name}/archive"


def submissions(course: str, name: str = "ps1") -> str:
    return f"/api/v1/courses/{course}/assignments/{name}/submissions"


def test_a_fetch_is_answered_as_flask_answers_it(live_server, two_ways, ps1):
    token = live_server.issue_token("ada", ps1)
    hot, flask = (
        two_ways.hot("GET", archive(ps1), token=token),
        two_ways.flask("GET", archive(ps1), token=token),
    )
    assert hot.status == flask.status == "200 OK"
    assert hot.headers == flask.headers
    assert hot.body == flask.body and len(hot.body) > 300
    assert hot.notes == flask.notes and hot.notes["route"].endswith("/archive")
    assert hot.notes["user"] == "ada"
    names = {name for name, _ in hot.headers}
    assert {"X-Request-Id", "X-Content-SHA256", "X-Release-Version", "X-Frame-Options"} <= names


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        (archive("{c}"), None, 401),  # no token
        (archive("{c}"), "not-a-token", 401),
        (archive("{c}", "nope"), "ada", 404),
        (archive("{c}", "draft"), "ada", 404),  # never released
        (archive("{c}", "bad%20name"), "ada", 400),
        (archive("{c}", "caf%C3%A9"), "ada", 400),  # named in the message as Flask reads it
        (archive("elsewhere"), "ada", 404),  # another course: the token is not for it
    ],
)
def test_a_refused_fetch_is_flasks_refusal(live_server, two_ways, ps1, path, token, status):
    if token == "ada":
        token = live_server.issue_token("ada", ps1)
    same_refusal(two_ways, "GET", path.format(c=ps1), status, token=token)


def test_a_submission_is_answered_as_flask_answers_it(live_server, two_ways, ps1):
    token = live_server.issue_token("ada", ps1)
    body = make_tar({"ps1.ipynb": NOTEBOOK})
    hot = two_ways.hot("POST", submissions(ps1), token=token, body=body, headers=TAR)
    flask = two_ways.flask("POST", submissions(ps1), token=token, body=body, headers=TAR)
    assert hot.status == flask.status == "201 CREATED"
    assert hot.headers == flask.headers
    differ = {"id", "timestamp"}  # two submissions: their own ids and times
    hot_body, flask_body = hot.json(), flask.json()
    assert hot_body["id"] != flask_body["id"]
    assert {k: v for k, v in hot_body.items() if k not in differ} == {
        k: v for k, v in flask_body.items() if k not in differ
    }
    assert hot_body["release_notebooks"] == ["ps1"]
    assert hot.notes == flask.notes and hot.notes["route"].endswith("/submissions")


def test_a_repeated_submission_is_the_first_one_both_ways(live_server, two_ways, ps1):
    token = live_server.issue_token("ada", ps1)
    body = make_tgz({"ps1.ipynb": NOTEBOOK})
    sent = {"Content-Type": "application/gzip", "Idempotency-Key": "k-hot-1"}
    first = two_ways.hot("POST", submissions(ps1), token=token, body=body, headers=sent)
    again_hot = two_ways.hot("POST", submissions(ps1), token=token, body=body, headers=sent)
    again_flask = two_ways.flask("POST", submissions(ps1), token=token, body=body, headers=sent)
    assert first.status == "201 CREATED"
    assert again_hot.status == again_flask.status == "200 OK"
    assert (again_hot.headers, again_hot.body) == (again_flask.headers, again_flask.body)
    assert ("Idempotent-Replayed", "true") in again_hot.headers
    assert again_hot.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no token", 401),
        ("not a tar", 400),
        ("wrong type", 415),
        ("bad key", 400),
        ("too large", 413),
        ("cut short", 400),
        ("never released", 404),  # a student is not shown an unreleased assignment
        ("no such assignment", 404),
    ],
)
def test_a_refused_submission_is_flasks_refusal(live_server, two_ways, ps1, case, status):
    token = live_server.issue_token("ada", ps1)
    body = make_tar({"ps1.ipynb": NOTEBOOK})
    request: dict[str, Any] = {"token": token, "body": body, "headers": dict(TAR)}
    path = submissions(ps1)
    if case == "no token":
        request["token"] = None
    elif case == "not a tar":
        request["body"] = b"this is not an archive" * 40
    elif case == "wrong type":
        request["headers"] = {"Content-Type": "text/plain"}
    elif case == "bad key":
        request["headers"]["Idempotency-Key"] = "no spaces allowed"
    elif case == "too large":
        request["length"] = live_server.state().settings.max_upload_bytes + 1
    elif case == "cut short":
        request["length"] = len(body) + 512
    elif case == "never released":
        path = submissions(ps1, "draft")
    elif case == "no such assignment":
        path = submissions(ps1, "nope")
    same_refusal(two_ways, "POST", path, status, **request)


def test_other_requests_go_to_flask(live_server, two_ways, ps1):
    token = live_server.issue_token("ada", ps1)
    for method, path in (
        ("HEAD", archive(ps1)),  # Flask answers HEAD for the GET route
        ("GET", submissions(ps1)),
        ("GET", f"/api/v1/courses/{ps1}//assignments/x/archive"),  # an empty segment
        ("GET", f"/api/v1/courses/{ps1}/assignments"),
    ):
        before = two_ways.flask_calls
        two_ways._call(method, path, token=token)
        assert two_ways.flask_calls == before + 1, (method, path)


def test_a_fetch_that_declares_a_body_is_flasks_to_bound(live_server, two_ways, ps1):
    token = live_server.issue_token("ada", ps1)
    before = two_ways.flask_calls
    answer = two_ways._call("GET", archive(ps1), token=token, body=b"x", length=2_000_000)
    assert two_ways.flask_calls == before + 1
    assert answer.status.startswith("413") and answer.json()["error"]["code"] == "payload_too_large"


def test_a_fetch_on_postgresql_writes_its_event_in_autocommit(live_server, two_ways, ps1):
    """On PostgreSQL a fetch's read and its one insert (the "fetched" event) each run in their
    own implicit transaction: two round trips, not BEGIN, SELECT, INSERT, COMMIT. A submission
    after it, on the same pooled connection, runs in a transaction again."""
    engine = two_ways.app.extensions["lti_exchange"].engine
    seen: list[tuple[str, str]] = []

    def record(conn, _cursor, statement, *_args) -> None:
        level = conn.get_execution_options().get("isolation_level", "")
        if engine.dialect.name == "postgresql":  # and what psycopg itself will do
            assert conn.connection.driver_connection.autocommit == (level == "AUTOCOMMIT")
        seen.append((statement.split()[0].upper(), level))

    token = live_server.issue_token("ada", ps1)
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert two_ways.hot("GET", archive(ps1), token=token).status == "200 OK"
        fetched, seen[:] = list(seen), []
        tar = make_tar({"ps1.ipynb": NOTEBOOK})
        answer = two_ways.hot(
            "POST",
            submissions(ps1),
            token=token,
            body=tar,
            headers={"Content-Type": "application/x-tar"},
        )
        assert answer.status.startswith("201"), answer.body
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert [kind for kind, _ in fetched] == ["SELECT", "INSERT"]
    autocommit = engine.dialect.name == "postgresql"
    assert all((level == "AUTOCOMMIT") == autocommit for _, level in fetched), fetched
    assert seen and all(level != "AUTOCOMMIT" for _, level in seen), seen
