"""A submission sent again with its ``Idempotency-Key`` (its answer was lost: a failover at the
instant of the commit, a proxy timeout, a dropped connection) answers with the submission the
first attempt stored: 200 and ``Idempotent-Replayed: true``, the same id and timestamp, nothing
stored twice, also when the attempts race. The unique index and its clash differ by database,
so these run on every backend."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid

import pytest
import requests

from tests.support import NOTEBOOK, TAR, assert_error, make_tar, release_as_teacher

pytestmark = pytest.mark.all_backends


def release(live_server, course: str, *names: str) -> None:
    for name in names:
        release_as_teacher(live_server, course, name, {f"{name}.ipynb": NOTEBOOK})


def submit(live_server, course: str, token: str, body: bytes, key: str | None, name="ps1"):
    headers = {**TAR, **({"Idempotency-Key": key} if key is not None else {})}
    return live_server.api(
        "POST",
        f"courses/{course}/assignments/{name}/submissions",
        token,
        data=body,
        headers=headers,
    )


def one_student(live_server, course: str, data_bytes: int) -> tuple[str, bytes, str, int]:
    """``ps1`` released; a student's token, their archive, a fresh key and the blobs so far."""
    release(live_server, course, "ps1")
    token = live_server.issue_token("ann", course)
    body = make_tar({"ps1.ipynb": NOTEBOOK, "data.bin": os.urandom(data_bytes)})
    return token, body, uuid.uuid4().hex, live_server.blob_count()


def listed(live_server, course: str) -> list[dict]:
    teacher = live_server.issue_token("teacher", course, "Instructor")
    return live_server.api("GET", f"courses/{course}/submissions", teacher).json()["submissions"]


def test_an_upload_sent_again_with_its_key_answers_with_the_first_submission(live_server, course):
    token, body, key, blobs_before = one_student(live_server, course, 300_000)

    first = submit(live_server, course, token, body, key)
    again = submit(live_server, course, token, body, key)

    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    for field in ("id", "timestamp", "sha256", "size", "notebooks", "release_notebooks"):
        assert again.json()[field] == first.json()[field]
    assert [s["id"] for s in listed(live_server, course)] == [first.json()["id"]]
    assert live_server.blob_count() == blobs_before + 1  # the repeat's copy was not kept
    teacher = live_server.issue_token("teacher", course, "Instructor")
    archive = live_server.api(
        "GET", f"courses/{course}/submissions/{first.json()['id']}/archive", teacher
    )
    assert hashlib.sha256(archive.content).hexdigest() == hashlib.sha256(body).hexdigest()


def test_a_key_repeated_with_other_files_or_another_assignment_stores_nothing(live_server, course):
    release(live_server, course, "ps1", "ps2")
    token = live_server.issue_token("ann", course)
    key = uuid.uuid4().hex
    first = submit(live_server, course, token, make_tar({"ps1.ipynb": NOTEBOOK}), key)
    assert first.status_code == 201, first.text
    blobs = live_server.blob_count()

    changed = make_tar({"ps1.ipynb": NOTEBOOK, "extra.txt": b"edited since"})
    other_files = submit(live_server, course, token, changed, key)
    other_assignment = submit(
        live_server, course, token, make_tar({"ps1.ipynb": NOTEBOOK}), key, name="ps2"
    )

    for answer in (other_files, other_assignment):
        assert_error(answer, 422, "idempotency_key_reused")
        assert "Submit again" in answer.json()["error"]["message"]
    assert [s["id"] for s in listed(live_server, course)] == [first.json()["id"]]
    assert live_server.blob_count() == blobs


def test_keys_belong_to_one_student_and_no_key_means_a_new_submission(live_server, course):
    release(live_server, course, "ps1")
    ann = live_server.issue_token("ann", course)
    bob = live_server.issue_token("bob", course)
    body = make_tar({"ps1.ipynb": NOTEBOOK})
    key = uuid.uuid4().hex

    answers = [
        submit(live_server, course, ann, body, key),
        submit(live_server, course, bob, body, key),  # the same key from someone else
        submit(live_server, course, ann, body, None),
        submit(live_server, course, ann, body, None),
    ]

    assert [a.status_code for a in answers] == [201, 201, 201, 201]
    assert len({a.json()["id"] for a in answers}) == 4
    assert sorted(s["student_id"] for s in listed(live_server, course)) == [
        "ann",
        "ann",
        "ann",
        "bob",
    ]


@pytest.mark.one_backend
@pytest.mark.parametrize("key", ["", "has space", "x" * 65, "ünïcode", "a/b", "a.b"])
def test_a_malformed_key_is_refused_and_nothing_stored(live_server, course, key):
    release(live_server, course, "ps1")
    token = live_server.issue_token("ann", course)
    blobs = live_server.blob_count()

    answer = submit(live_server, course, token, make_tar({"ps1.ipynb": NOTEBOOK}), key)

    assert_error(answer, 400, "invalid_idempotency_key")
    assert "1 to 64 letters" in answer.json()["error"]["message"]
    assert listed(live_server, course) == []
    assert live_server.blob_count() == blobs


def test_attempts_racing_with_one_key_store_one_submission(live_server, course):
    token, body, key, blobs_before = one_student(live_server, course, 2_000_000)
    start = threading.Barrier(6)
    answers: list[requests.Response] = []

    def attempt() -> None:
        start.wait()
        answers.append(submit(live_server, course, token, body, key))

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(a.status_code for a in answers) == [200] * 5 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(listed(live_server, course)) == 1
    assert live_server.blob_count() == blobs_before + 1
    assert live_server.partial_count() == 0


@pytest.mark.one_backend
def test_a_repeat_stands_in_for_a_first_attempts_lost_blob(live_server, course):
    """A blob removed after a commit whose answer was lost (as before the service kept blobs
    when the database dropped the connection): the repeat carries the same bytes, and the row
    now names them."""
    token, body, key, _blobs = one_student(live_server, course, 100_000)
    first = submit(live_server, course, token, body, key)
    assert first.status_code == 201, first.text
    teacher = live_server.issue_token("teacher", course, "Instructor")
    url = f"courses/{course}/submissions/{first.json()['id']}/archive"
    with live_server.state().session_factory() as session:
        from lti_exchange.models import Submission

        blob_key = session.get_one(Submission, first.json()["id"]).blob_key
    (live_server.storage_dir / "blobs" / blob_key).unlink()
    assert_error(live_server.api("GET", url, teacher), 410, "content_missing")

    again = submit(live_server, course, token, body, key)

    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    archive = live_server.api("GET", url, teacher)
    assert archive.status_code == 200
    assert archive.content == body
