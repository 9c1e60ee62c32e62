"""A large upload is checked against the exchange's limits before a byte of it is sent
(``nbgrader_plugin.upload_limits``), against the loopback origin of ``test_client_transport``
standing in for services old and new. (The real service's answer is checked end to end in
``tests/end_to_end/test_folder_over_the_limits.py``.)"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from nbgrader_plugin.client import ExchangeClientError
from nbgrader_plugin.upload_limits import (
    PREFLIGHT_BYTES,
    PREFLIGHT_MEMBERS,
    Upload,
    UploadLimits,
    refusal,
)
from tests.unit.test_client_transport import (  # noqa: F401 - clean_environment: autouse
    Origin,
    clean_environment,
    client_for,
    serve,
)

LIMITS = {
    "max_upload_bytes": 50_000_000,
    "max_unpacked_bytes": 60_000_000,
    "max_archive_members": 2000,
}
UNDER = dict(members=PREFLIGHT_MEMBERS + 1, unpacked=1000)  # large enough to ask, within limits


@pytest.fixture
def origin() -> Iterator[Origin]:
    yield from serve(Origin())


def answer_limits(origin: Origin, answer: object, status: int = 200) -> None:
    body = json.dumps(answer).encode()
    origin.routes["/api/v1/limits"] = (status, {"Content-Type": "application/json"}, body)


def upload(client, size: int = 3, **declared) -> object:
    return client.upload("POST", "courses/c1/x", io.BytesIO(b"x" * size), size, **declared)


def asked(origin: Origin) -> list[str]:
    return [f"{seen['method']} {seen['path']}" for seen in origin.seen]


def test_a_small_upload_is_sent_without_asking(origin):
    answer_limits(origin, LIMITS)
    with client_for(origin.url) as client:
        upload(client, members=PREFLIGHT_MEMBERS, unpacked=10)
    assert asked(origin) == ["POST /api/v1/courses/c1/x"]


def test_a_large_upload_within_the_limits_asks_once_per_client_then_is_sent(origin):
    answer_limits(origin, LIMITS)
    with client_for(origin.url) as client:
        upload(client, **UNDER)
        upload(client, size=PREFLIGHT_BYTES + 1)
    assert asked(origin) == [
        "GET /api/v1/limits",
        "POST /api/v1/courses/c1/x",
        "POST /api/v1/courses/c1/x",
    ]
    assert origin.seen[0]["headers"]["Authorization"] == "Bearer the-token"


@pytest.mark.parametrize(
    ("declared", "code", "says"),
    [
        (
            {"members": 2001},
            "archive_too_many_members",
            "The folder holds 2001 files and folders; the exchange takes at most 2000 in one "
            "upload. Remove generated files (caches, checkpoints, data sets, virtual "
            "environments) from the folder, or ask the exchange's operator to raise "
            "LTI_EXCHANGE_MAX_ARCHIVE_MEMBERS. Nothing was sent.",
        ),
        (
            {"members": 1001, "unpacked": 60_000_001},
            "archive_too_large",
            "The folder's files add up to 60.0 MB (60000001 bytes); the exchange takes at most "
            "60.0 MB (60000000 bytes) in one upload. Remove large files (data sets, outputs) "
            "from the folder, or ask the exchange's operator to raise "
            "LTI_EXCHANGE_MAX_UNPACKED_BYTES. Nothing was sent.",
        ),
    ],
)
def test_a_large_upload_over_a_limit_is_refused_without_sending_it(origin, declared, code, says):
    answer_limits(origin, LIMITS)
    with client_for(origin.url) as client, pytest.raises(ExchangeClientError) as refused:
        upload(client, **declared)
    assert (refused.value.status, refused.value.code, str(refused.value)) == (413, code, says)
    assert asked(origin) == ["GET /api/v1/limits"]


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        {},
        {**LIMITS, "max_archive_members": "2000"},
        {**LIMITS, "max_archive_members": True},
        {**LIMITS, "max_upload_bytes": 0},
        {**LIMITS, "max_unpacked_bytes": -1},
        {**LIMITS, "max_upload_bytes": 1.5e9},
    ],
)
def test_an_answer_without_three_whole_numbers_leaves_the_check_to_the_upload(origin, answer):
    answer_limits(origin, answer)
    with client_for(origin.url) as client:
        upload(client, members=10**6)
    assert asked(origin) == ["GET /api/v1/limits", "POST /api/v1/courses/c1/x"]


@pytest.mark.parametrize(
    "answer",
    [
        (404, {"error": {"status": 404, "code": "not_found", "message": "No such route."}}),
        (404, None),  # a proxy's bare 404
    ],
)
def test_a_service_too_old_to_say_is_sent_the_upload_and_not_asked_again(origin, answer):
    status, body = answer
    content = json.dumps(body).encode() if body else b"<html>Not Found</html>"
    origin.routes["/api/v1/limits"] = (status, {"Content-Type": "text/html"}, content)
    with client_for(origin.url) as client:
        upload(client, members=10**6)
        upload(client, members=10**6)
    assert asked(origin) == [
        "GET /api/v1/limits",
        "POST /api/v1/courses/c1/x",
        "POST /api/v1/courses/c1/x",
    ]


@pytest.mark.parametrize("script", [["503"], ["502"], ["drop"]])
def test_a_question_without_an_answer_now_leaves_the_check_to_the_upload(origin, script):
    """The upload has its own retries: a courtesy question does not fail it, and is asked again
    by the next upload."""
    origin.scripts["/api/v1/limits"] = list(script)
    answer_limits(origin, LIMITS)
    with client_for(origin.url) as client:
        upload(client, **UNDER)
        upload(client, **UNDER)
    assert asked(origin) == [
        "GET /api/v1/limits",
        "POST /api/v1/courses/c1/x",
        "GET /api/v1/limits",
        "POST /api/v1/courses/c1/x",
    ]


def test_an_answer_that_is_not_json_leaves_the_check_to_the_upload(origin):
    origin.routes["/api/v1/limits"] = (200, {"Content-Type": "text/html"}, b"<html>portal</html>")
    with client_for(origin.url) as client:
        upload(client, **UNDER)
    assert asked(origin) == ["GET /api/v1/limits", "POST /api/v1/courses/c1/x"]


@pytest.mark.parametrize(
    ("status", "code"), [(403, "not_enrolled"), (404, "course_not_found"), (401, "revoked")]
)
def test_a_refusal_of_the_question_is_the_users_answer(origin, status, code):
    """What refuses the question (the enrolment, the course, the session) would refuse the
    upload after it was sent: the user hears it now."""
    error = {"error": {"status": status, "code": code, "message": "Refused."}}
    answer_limits(origin, error, status)
    with client_for(origin.url) as client, pytest.raises(ExchangeClientError) as refused:
        upload(client, **UNDER)
    assert (refused.value.status, refused.value.code) == (status, code)
    assert asked(origin) == ["GET /api/v1/limits"]


def test_the_body_limit_is_checked_first_and_feedback_gets_its_own_advice():
    limits = UploadLimits(1000, 1000, 10)
    found = refusal(Upload(size=2_500_000_000, members=11, unpacked=2000, feedback=True), limits)
    assert found is not None
    assert found.code == "payload_too_large"
    assert found.message == (
        "The feedback makes an upload of 2.5 GB (2500000000 bytes); the exchange takes at most "
        "1000 bytes in one upload. Release feedback for fewer students at a time (nbgrader "
        "release_feedback --student), or ask the exchange's operator to raise "
        "LTI_EXCHANGE_MAX_UPLOAD_BYTES. Nothing was sent."
    )
    assert refusal(Upload(size=1000, members=10, unpacked=1000), limits) is None
    assert refusal(Upload(size=1000), limits) is None  # nothing declared, nothing to hold it to


@pytest.mark.parametrize(
    ("upload_", "worth"),
    [
        (Upload(size=PREFLIGHT_BYTES), False),
        (Upload(size=PREFLIGHT_BYTES + 1), True),
        (Upload(size=10, members=PREFLIGHT_MEMBERS), False),
        (Upload(size=10, members=PREFLIGHT_MEMBERS + 1), True),
    ],
)
def test_only_uploads_over_the_thresholds_ask_first(upload_, worth):
    assert upload_.worth_checking() is worth
