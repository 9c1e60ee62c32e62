"""Malformed input that used to reach a 500: huge ids, out-of-range timestamps and scores,
deeply nested JSON, JSON constants, cut-off chunked bodies; and HEAD on downloads.

The range tests run on every backend (the database decides what overflows); the rest are
marked ``one_backend``.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from lti_exchange.models import Event
from tests.support import TAR, assert_error, make_tar

# Id, timestamp and score ranges differ by database.
pytestmark = pytest.mark.all_backends

HUGE_IDS = [str(2**31), str(2**63), "99999999999999999999", "9" * 400]


class Course:
    """A course with an Instructor, a Learner (alice), released ps1 and alice's submission."""

    def __init__(self, server, code: str) -> None:
        self.server, self.code = server, code
        self.teacher = server.issue_token("teacher", code, "Instructor")
        self.alice = server.issue_token("alice", code, "Learner")
        tar = make_tar({"p1.ipynb": b"{}"})
        path = f"courses/{code}/assignments/ps1"
        assert server.api("POST", path + "/releases", self.teacher, data=tar, headers=TAR).ok
        answer = server.api("POST", path + "/submissions", self.alice, data=tar, headers=TAR)
        assert answer.status_code == 201, answer.text
        self.submission = answer.json()

    def json(self, method: str, path: str, body: str | bytes, token: str | None = None):
        return self.server.api(
            method,
            path.format(c=self.code),
            token or self.teacher,
            data=body,
            headers={"Content-Type": "application/json"},
        )

    def grades(self) -> list:
        answer = self.server.api("GET", f"courses/{self.code}/grades", self.teacher)
        assert answer.status_code == 200, answer.text
        return answer.json()["grades"]

    def collected(self) -> list:
        answer = self.server.api("GET", f"courses/{self.code}/submissions", self.teacher)
        return [s["collected_at"] for s in answer.json()["submissions"]]

    def events(self, kind: str) -> int:
        state = self.server.state()
        with state.session_factory() as session:
            return session.execute(
                select(func.count(Event.id)).where(Event.kind == kind)
            ).scalar_one()


@pytest.fixture
def setup(live_server, course) -> Course:
    return Course(live_server, course)


# --- ids beyond the id columns' range (INTEGER: 32 bits on PostgreSQL and MariaDB) -------


@pytest.mark.parametrize("number", HUGE_IDS)
@pytest.mark.parametrize(
    "method, suffix",
    [("GET", ""), ("GET", "/archive"), ("DELETE", "")],
    ids=["get", "archive", "delete"],
)
def test_submission_id_beyond_the_id_range_is_not_found(live_server, setup, number, method, suffix):
    answer = live_server.api(
        method, f"courses/{setup.code}/submissions/{number}{suffix}", setup.teacher
    )
    assert_error(answer, 404, "submission_not_found", "No submission")


@pytest.mark.parametrize("number", [2**31, 2**63, 2**64, 10**30])
def test_collection_of_ids_beyond_the_id_range_is_refused(setup, number):
    body = json.dumps({"submission_ids": [setup.submission["id"], number]})
    answer = setup.json("POST", "courses/{c}/assignments/ps1/collection", body)
    assert_error(answer, 400, "invalid_request", "submission_ids")
    assert setup.collected() == [None]


def test_largest_id_is_simply_not_found(setup):
    body = json.dumps({"submission_ids": [2**31 - 1]})
    answer = setup.json("POST", "courses/{c}/assignments/ps1/collection", body)
    assert_error(answer, 404, "submission_not_found")


# --- timestamps out of range ------------------------------------------------------------------

OUT_OF_RANGE = [
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC: Python overflows
    "0001-01-01 00:00:00.000000 UTC",
    "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC: Python overflows
    "1969-12-31T23:59:59Z",
    "1000-01-01T00:00:00",
]


@pytest.mark.parametrize("stamp", OUT_OF_RANGE)
def test_collection_since_out_of_range_is_refused(setup, stamp):
    body = json.dumps({"since": stamp})
    answer = setup.json("POST", "courses/{c}/assignments/ps1/collection", body)
    assert_error(answer, 400, "invalid_request", "out of range", "1970", "9999")
    assert setup.collected() == [None]


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59+01:00", "1970-01-01T00:00:00Z"])
def test_collection_since_at_the_edges_of_the_range_is_accepted(setup, stamp):
    answer = setup.json(
        "POST", "courses/{c}/assignments/ps1/collection", json.dumps({"since": stamp})
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("stamp", OUT_OF_RANGE)
def test_grade_submitted_at_out_of_range_is_refused(setup, stamp):
    grade = {"assignment_id": "ps1", "student_id": "alice", "score": 1, "max_score": 2}
    body = json.dumps({"grades": [grade, {**grade, "student_id": "bob", "submitted_at": stamp}]})
    answer = setup.json("POST", "courses/{c}/grades", body)
    assert_error(answer, 400, "invalid_request", "out of range")
    assert setup.grades() == []


def test_grade_submitted_at_at_the_end_of_the_range_is_stored(setup):
    grade = {"assignment_id": "ps1", "student_id": "alice", "score": 1, "max_score": 2}
    grade["submitted_at"] = "9999-12-31 23:59:59.999999 UTC"
    answer = setup.json("POST", "courses/{c}/grades", json.dumps({"grades": [grade]}))
    assert answer.status_code == 200, answer.text
    assert len(setup.grades()) == 1


# --- scores out of range ----------------------------------------------------------------------

BAD_SCORES = {
    "huge-int": ("1" + "0" * 400, "5"),  # math.isfinite(10**400) raises OverflowError
    "huge-int-max": ("1", "1" + "0" * 400),
    "over-max": ("1e10", "5"),
    "max-over-max": ("1", "1000000001"),
    "float-overflow": ("1e400", "5"),  # parses as inf
    "nan": ("NaN", "5"),
    "infinity": ("1", "Infinity"),
    "negative": ("-1", "5"),
    "zero-max": ("0", "0"),
    "string": ('"3"', "5"),
    "bool": ("true", "5"),
}


@pytest.mark.parametrize("score, max_score", BAD_SCORES.values(), ids=BAD_SCORES.keys())
def test_out_of_range_score_is_refused(setup, score, max_score):
    body = (
        '{"grades": [{"assignment_id": "ps1", "student_id": "alice", '
        f'"score": {score}, "max_score": {max_score}}}]}}'
    )
    answer = setup.json("POST", "courses/{c}/grades", body)
    assert_error(answer, 400, "invalid_request")
    assert setup.grades() == []


def test_largest_score_is_stored(setup):
    grade = {"assignment_id": "ps1", "student_id": "alice", "score": 10**9, "max_score": 10**9}
    answer = setup.json("POST", "courses/{c}/grades", json.dumps({"grades": [grade]}))
    assert answer.status_code == 200, answer.text
    assert [(g["score"], g["max_score"]) for g in setup.grades()] == [(1e9, 1e9)]


# --- JSON documents ---------------------------------------------------------------------------


@pytest.mark.one_backend
@pytest.mark.parametrize("depth", [33, 1000, 100_000])
@pytest.mark.parametrize(
    "path", ["token/refresh", "courses/{c}/grades", "courses/{c}/assignments/ps1/collection"]
)
def test_deeply_nested_json_is_refused(setup, path, depth):
    body = '{"x": ' + "[" * depth + "]" * depth + "}"
    answer = setup.json("POST", path, body)
    assert_error(answer, 400, "invalid_request", "nested", "32")


@pytest.mark.one_backend
def test_nesting_inside_strings_does_not_count(setup):
    body = json.dumps({"refresh_token": "[" * 600, "pad": [[[["{"]]]]})
    answer = setup.json("POST", "token/refresh", body)
    assert_error(answer, 400, "invalid_request", "refresh_token")


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "body", [b"\xff\xfe{", b'{"a": NaN}', b'{"a": -Infinity}', b'{"a": 1', b"1" * 5000]
)
def test_malformed_json_is_refused(setup, body):
    answer = setup.json("POST", "token/refresh", body)
    assert_error(answer, 400, "invalid_request", "JSON")


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "target, content_type, start",
    [
        ("grades", "application/json", b'{"grades": ['),
        ("assignments/ps1/submissions", "application/x-tar", make_tar({"p1.ipynb": b"{}"})[:700]),
    ],
    ids=["json", "archive"],
)
def test_cut_off_chunked_body_is_refused(live_server, setup, target, content_type, start):
    """A chunked body whose chunk is shorter than announced, then the client stops sending."""
    parts = urlsplit(live_server.url)
    head = (
        f"POST /api/v1/courses/{setup.code}/{target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {setup.alice if 'submissions' in target else setup.teacher}\r\n"
        f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    submissions = len(
        setup.server.api("GET", f"courses/{setup.code}/submissions", setup.teacher).json()[
            "submissions"
        ]
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head + b"4000\r\n" + start)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line = reply.split(b"\r\n", 1)[0]
    assert status_line.split()[1:2] == [b"400"], reply[:500]
    assert b"upload_incomplete" in reply, reply[:1000]
    assert setup.grades() == []
    after = setup.server.api("GET", f"courses/{setup.code}/submissions", setup.teacher).json()
    assert len(after["submissions"]) == submissions


# --- HEAD on downloads --------------------------------------------------------------------------


@pytest.mark.one_backend
def test_head_on_assignment_download_records_no_fetch(live_server, setup):
    path = f"courses/{setup.code}/assignments/ps1/archive"
    before = setup.events("fetched")
    head = live_server.api("HEAD", path, setup.alice)
    assert head.status_code == 200
    assert head.content == b""
    get = live_server.api("GET", path, setup.alice)
    assert head.headers["Content-Length"] == str(len(get.content))
    assert head.headers["X-Content-SHA256"] == get.headers["X-Content-SHA256"]
    assert head.headers["X-Release-Version"] == "1"
    # Only the GET counted as a fetch.
    assert setup.events("fetched") == before + 1
    listed = live_server.api("GET", f"courses/{setup.code}/assignments", setup.alice).json()
    assert listed["assignments"][0]["fetched_at"] is not None


@pytest.mark.one_backend
def test_head_before_any_download_leaves_fetched_at_empty(live_server, setup):
    head = live_server.api("HEAD", f"courses/{setup.code}/assignments/ps1/archive", setup.alice)
    assert head.status_code == 200
    listed = live_server.api("GET", f"courses/{setup.code}/assignments", setup.alice).json()
    assert listed["assignments"][0]["fetched_at"] is None


@pytest.mark.one_backend
def test_head_on_feedback_download_records_nothing(live_server, setup):
    path = f"courses/{setup.code}/assignments/ps1/feedback"
    before = setup.events("feedback_fetched")
    head = live_server.api("HEAD", path, setup.alice)
    assert head.status_code == 200
    assert head.headers["Cache-Control"] == "no-store"
    assert setup.events("feedback_fetched") == before
    assert live_server.api("GET", path, setup.alice).status_code == 200
    assert setup.events("feedback_fetched") == before + 1
