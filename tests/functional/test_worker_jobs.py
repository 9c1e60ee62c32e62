"""The worker's periodic jobs: purging expired key-value rows and old refresh tokens, roster
syncs asked for by instructor launches, and one log line per grade retry or failure.

The worker runs in the test process against the live service's database; the LMS is the
simulated platform over HTTP.
"""

# ruff: noqa: F811 - the LTI fixtures are imported by name

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from lti_exchange.jobs.periodic import JobRunner, PeriodicJob
from lti_exchange.jobs.purge import (
    REFRESH_TOKEN_GRACE,
    delete_in_batches,
    purge_key_values,
    purge_refresh_tokens,
)
from lti_exchange.jobs.roster import REQUEST_PREFIX, requested_courses, run_roster_requests
from lti_exchange.models import Course, Grade, GradeOutbox, KeyValue, RefreshToken
from lti_exchange.models.types import utcnow
from lti_exchange.worker import GradeWorker
from tests.functional.lti.conftest import browser, platform  # noqa: F401 - fixtures
from tests.functional.lti.helpers import bearer, describe, launched
from tests.lms.platform import INSTRUCTOR, LEARNER, LmsContext, LmsUser
from tests.support import assert_error


def refresh(live_server, token: str) -> requests.Response:
    return requests.post(
        f"{live_server.url}/api/v1/token/refresh", json={"refresh_token": token}, timeout=30
    )


def token_row(session, token: str) -> RefreshToken | None:
    digest = hashlib.sha256(token.encode()).hexdigest()
    return session.execute(
        select(RefreshToken).where(RefreshToken.token_hash == digest)
    ).scalar_one_or_none()


# --------------------------------------------------------------------------- the runner


def test_the_runner_runs_each_job_once_per_interval_and_survives_a_failing_one(caplog):
    clock = [1000.0]
    runs: list[str] = []

    def failing() -> int:
        runs.append("failing")
        raise RuntimeError("the database went away")

    def counting() -> int:
        runs.append("counting")
        return 3

    runner = JobRunner(
        [PeriodicJob("failing", 60, failing), PeriodicJob("counting", 10, counting)],
        clock=lambda: clock[0],
    )
    caplog.set_level(logging.ERROR, logger="lti_exchange.jobs.periodic")
    assert runner.run_due() == {"counting": 3}, "a failing job leaves the others running"
    assert runs == ["failing", "counting"]
    assert "worker job failing failed; retrying in 60 s" in caplog.text
    assert "the database went away" in caplog.text

    clock[0] += 10
    assert runner.run_due() == {"counting": 3}
    assert runs == ["failing", "counting", "counting"], "failing is not due before 60 s"
    clock[0] += 50
    runner.run_due()
    assert runs.count("failing") == 2, "a failed job is tried again at its next interval"
    assert runner.run_now("counting") == 3


# --------------------------------------------------------------------------- key-value purge


@pytest.mark.all_backends  # expiry compared in a batched DELETE: timestamp storage per database
def test_expired_key_values_are_purged_in_batches_and_live_ones_kept(live_server):
    sessions = live_server.state().session_factory
    prefix = f"purge-{uuid.uuid4().hex[:8]}:"
    now = utcnow()
    with sessions() as session:
        for n in range(7):
            session.add(
                KeyValue(key=f"{prefix}old{n}", value="1", expires_at=now - timedelta(seconds=5))
            )
        for n in range(2):
            session.add(
                KeyValue(key=f"{prefix}live{n}", value="1", expires_at=now + timedelta(hours=1))
            )
        session.commit()

    def mine() -> list[str]:
        with sessions() as session:
            rows = select(KeyValue.key).where(KeyValue.key.like(f"{prefix}%"))
            return sorted(session.execute(rows).scalars())

    assert len(mine()) == 9
    expired_mine = KeyValue.key.like(f"{prefix}%") & (KeyValue.expires_at <= utcnow())
    # A pass deletes at most batch x max_batches rows; the next pass goes on.
    assert delete_in_batches(sessions, KeyValue.key, expired_mine, batch=3, max_batches=2) == 6
    assert len(mine()) == 3
    assert purge_key_values(sessions) >= 1
    assert mine() == [f"{prefix}live0", f"{prefix}live1"]


# --------------------------------------------------------------------------- refresh-token purge


@pytest.mark.all_backends  # expiry compared in a batched DELETE: timestamp storage per database
def test_old_refresh_tokens_are_purged_and_a_used_unexpired_one_still_betrays_a_replay(
    live_server, platform, browser
):
    first = launched(platform.launch(browser, user=LmsUser.make(), context=LmsContext.make()))
    rotated = refresh(live_server, first["refresh_token"])
    assert rotated.status_code == 200, describe(rotated)
    second = rotated.json()

    sessions = live_server.state().session_factory
    now = utcnow()
    long_ago = now - REFRESH_TOKEN_GRACE - timedelta(hours=1)
    recently = now - REFRESH_TOKEN_GRACE + timedelta(hours=1)
    with sessions() as session:
        used = token_row(session, first["refresh_token"])
        assert used is not None and used.used_at is not None, "the first token is spent"
        enrolment_id = used.enrolment_id

        def row(expires, **states) -> RefreshToken:
            return RefreshToken(
                token_hash=uuid.uuid4().hex + uuid.uuid4().hex,
                enrolment_id=enrolment_id,
                created_at=expires - timedelta(days=30),
                expires_at=expires,
                **states,
            )

        session.add_all(
            [
                row(long_ago),  # expired, never used
                row(long_ago, used_at=long_ago - timedelta(days=1)),  # spent and expired
                row(long_ago, revoked_at=long_ago - timedelta(days=1)),  # revoked and expired
                row(recently),  # expired within the grace: kept
                row(recently, used_at=recently - timedelta(days=1)),  # idem, spent
            ]
        )
        session.commit()

    def count() -> int:
        with sessions() as session:
            query = select(func.count()).where(RefreshToken.enrolment_id == enrolment_id)
            return session.execute(query).scalar_one()

    assert count() == 7
    assert purge_refresh_tokens(sessions) >= 3
    assert count() == 4, "the three expired beyond the grace are gone, the rest kept"
    with sessions() as session:
        assert token_row(session, first["refresh_token"]) is not None, "spent, not expired"
        assert token_row(session, second["refresh_token"]) is not None, "live"

    # The spent token leaks after the purge: its replay is still caught and ends the family.
    replay = refresh(live_server, first["refresh_token"])
    assert_error(replay, 401, "refresh_token_reused", "sessions", "ended")
    assert_error(refresh(live_server, second["refresh_token"]), 401)


# --------------------------------------------------------------------------- roster sync


def settle_roster_requests(state) -> None:
    """Let a worker take the requests earlier tests' launches left (bounded)."""
    for _ in range(50):
        if not requested_courses(state):
            return
        run_roster_requests(state, "settle")
    raise AssertionError(f"roster requests left: {requested_courses(state)}")


def first_page_membership_requests(platform, context: LmsContext) -> int:
    """How many roster reads started (first pages) for ``context``: one per sync."""
    return sum(
        1
        for r in platform.service_requests
        if r.kind == "memberships" and r.context_id == context.id and "page" not in r.query
    )


@pytest.mark.all_backends  # two workers race for one request: insert-if-absent lock, atomic pop
def test_an_instructor_launch_asks_for_one_roster_sync_that_one_of_two_workers_performs(
    live_server, platform
):
    context, newcomer = LmsContext.make(), LmsUser.make("Ros", "Ter")
    platform.set_roster(context, [newcomer, (LmsUser.make("Stu", "Dent"), LEARNER)])
    state = live_server.state()
    settle_roster_requests(state)
    teacher = launched(
        platform.launch(requests.Session(), roles=[INSTRUCTOR], context=context), "Instructor"
    )
    with state.session_factory() as session:
        course_id = session.execute(
            select(Course.id).where(
                Course.org_id == teacher["org_id"], Course.code == teacher["course_id"]
            )
        ).scalar_one()
        request = session.get(KeyValue, f"{REQUEST_PREFIX}{course_id}")
        assert request is not None, "the launch left a request for the worker"
        assert json.loads(request.value) == {"course_id": course_id}
    assert first_page_membership_requests(platform, context) == 0, "the launch did not sync"

    workers = [GradeWorker(state, worker_id=f"roster-{n}") for n in range(2)]
    start = threading.Barrier(2)
    done: list[int] = []

    def run(worker: GradeWorker) -> None:
        start.wait()
        done.append(worker.jobs.run_now("roster-sync"))

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(done) == [0, 1], "one worker synced, the other found nothing to do"
    assert first_page_membership_requests(platform, context) == 1, "synced once, by one worker"
    with state.session_factory() as session:
        assert session.get(KeyValue, f"{REQUEST_PREFIX}{course_id}") is None

    members = requests.get(
        f"{live_server.url}/api/v1/courses/{teacher['course_id']}/members",
        headers=bearer(teacher["access_token"]),
        timeout=60,
    ).json()["members"]
    assert newcomer.sub in {m["lms_user_id"] for m in members}

    # Another instructor launch within the sync interval asks for nothing more.
    platform.launch(requests.Session(), roles=[INSTRUCTOR], context=context)
    workers[0].jobs.run_now("roster-sync")
    assert first_page_membership_requests(platform, context) == 1


# --------------------------------------------------------------------------- grade log lines


def test_a_grade_retry_and_a_grade_failure_each_log_one_line_without_secrets(
    live_server, platform, caplog
):
    context = LmsContext.make()
    teacher = launched(
        platform.launch(requests.Session(), roles=[INSTRUCTOR], context=context), "Instructor"
    )
    student = LmsUser.make("Log", "Line")
    body = launched(platform.launch(requests.Session(), user=student, context=context), "Learner")
    pushed = requests.post(
        f"{live_server.url}/api/v1/courses/{teacher['course_id']}/grades",
        json={
            "grades": [
                {"assignment_id": "ps1", "student_id": body["username"], "score": 1, "max_score": 2}
            ]
        },
        headers=bearer(teacher["access_token"]),
        timeout=60,
    )
    assert pushed.status_code == 200, describe(pushed)
    sessions = live_server.state().session_factory
    with sessions() as session:
        grade_id, outbox_id = session.execute(
            select(Grade.id, GradeOutbox.id)
            .join(GradeOutbox, GradeOutbox.grade_id == Grade.id)
            .join(Course, Course.id == Grade.course_id)
            .where(Course.org_id == teacher["org_id"], Course.code == teacher["course_id"])
        ).one()
    ours = f"grade {grade_id} (outbox {outbox_id})"
    worker = GradeWorker(live_server.state())
    caplog.set_level(logging.INFO, logger="lti_exchange.worker")

    platform.fail_next_score_posts(1, 503)
    assert worker.run_once()["retrying"] >= 1
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith(ours)]
    assert len(retries) == 1, retries
    assert "attempt 1 failed (LMS status 503)" in retries[0], retries[0]
    assert "retrying in 1 s" in retries[0], retries[0]

    caplog.clear()
    platform.reject_user(student.sub, 400, "this user cannot be graded")
    try:
        with sessions() as session:
            session.get(GradeOutbox, outbox_id).available_at = utcnow()
            session.commit()
        assert worker.run_once()["failed"] >= 1
    finally:
        platform.accept_user(student.sub)
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith(ours)]
    assert len(failures) == 1, failures
    assert "failed (LMS status 400)" in failures[0], failures[0]
    assert "LMS status 400" in failures[0] and "cannot be graded" in failures[0], failures[0]
    for record in caplog.records:
        assert "Bearer" not in record.getMessage()
        assert body["access_token"] not in record.getMessage()
