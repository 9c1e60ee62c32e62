"""Grades back to the LMS (AGS) and the class roster (NRPS), against the simulated platform.

The worker is the service's own ``GradeWorker``, run in the test process against the live
service's database; the LMS is the simulated platform over HTTP.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import update

from lti_exchange.jobs.roster import requested_courses
from lti_exchange.models import GradeOutbox
from lti_exchange.models.types import utcnow
from lti_exchange.worker import GradeWorker
from tests.functional.lti.conftest import lti_exchange
from tests.functional.lti.helpers import bearer, describe, launched
from tests.lms.platform import INSTRUCTOR, LEARNER, TEST_USER, LmsContext, LmsUser


def setup_course(platform, students: int = 3):
    """An instructor and ``students`` learners launched into a new LMS course."""
    context = LmsContext.make()
    teacher = launched(
        platform.launch(requests.Session(), roles=[INSTRUCTOR], context=context), "Instructor"
    )
    people = []
    for index in range(students):
        user = LmsUser.make(f"Student{index}", "Example")
        body = launched(platform.launch(requests.Session(), user=user, context=context), "Learner")
        people.append((user, body))
    return context, teacher, people


def push(live_server, teacher: dict, grades: list[dict]) -> dict:
    answer = requests.post(
        f"{live_server.url}/api/v1/courses/{teacher['course_id']}/grades",
        json={"grades": grades},
        headers=bearer(teacher["access_token"]),
        timeout=60,
    )
    assert answer.status_code == 200, describe(answer)
    return answer.json()


def status(live_server, teacher: dict) -> dict:
    answer = requests.get(
        f"{live_server.url}/api/v1/courses/{teacher['course_id']}/grades",
        headers=bearer(teacher["access_token"]),
        timeout=60,
    )
    assert answer.status_code == 200, describe(answer)
    return answer.json()


def drain(live_server, *, rounds: int = 40) -> dict[str, int]:
    """Run the worker until nothing is due or waiting (bounded); return the summed counts."""
    worker = GradeWorker(live_server.state())
    total = {"sent": 0, "retrying": 0, "failed": 0, "deferred": 0}
    for _ in range(rounds):
        counts = worker.run_once()
        for key, value in counts.items():
            total[key] += value
        with live_server.state().session_factory() as session:
            waiting = session.query(GradeOutbox).count()
            if not waiting:
                return total
            # Make retries due now instead of sleeping through the back-off.
            session.execute(update(GradeOutbox).values(available_at=utcnow()))
            session.commit()
        time.sleep(0.05)
    return total


def scores_by_user(platform, context) -> dict[str, float]:
    return {user: body["scoreGiven"] for (_item, user), body in platform.scores(context).items()}


@pytest.mark.all_backends  # line-item lock (insert-if-absent) and unique line items
def test_grades_reach_the_lms_one_line_item_per_assignment(live_server, platform):
    context, teacher, people = setup_course(platform)
    grades = [
        {"assignment_id": name, "student_id": body["username"], "score": score, "max_score": 10}
        for name in ("ps1", "ps2")
        for (_user, body), score in zip(people, (7, 8.5, 0), strict=True)
    ]
    answer = push(live_server, teacher, grades)
    assert answer["counts"] == {"queued": 6, "unchanged": 0, "not_sendable": 0}
    assert drain(live_server)["sent"] == 6

    items = platform.lineitems(context)
    assert sorted(item["resourceId"] for item in items) == ["ps1", "ps2"]
    assert all(item["scoreMaximum"] == 10 and item["tag"] == "nbgrader" for item in items)
    scores = platform.scores(context)
    assert len(scores) == 6
    expected = {
        (name, user.sub): score
        for name in ("ps1", "ps2")
        for (user, _body), score in zip(people, (7, 8.5, 0), strict=True)
    }
    by_item = {item["id"]: item["resourceId"] for item in items}
    got = {(by_item[item], user): body["scoreGiven"] for (item, user), body in scores.items()}
    assert got == expected
    for body in scores.values():
        assert body["activityProgress"] == "Completed"
        assert body["gradingProgress"] == "FullyGraded"
        assert body["scoreMaximum"] == 10
    final = status(live_server, teacher)
    assert final["counts"]["sent"] == 6 and final["failed"] == []
    assert all(g["sent_at"] for g in final["grades"])


def test_unchanged_grades_send_nothing_and_changed_ones_send_the_new_score(live_server, platform):
    context, teacher, people = setup_course(platform, students=2)
    grades = [
        {"assignment_id": "ps1", "student_id": body["username"], "score": 5, "max_score": 10}
        for _user, body in people
    ]
    push(live_server, teacher, grades)
    drain(live_server)
    posts_before = len(platform.score_posts)

    again = push(live_server, teacher, grades)
    assert again["counts"] == {"queued": 0, "unchanged": 2, "not_sendable": 0}
    assert drain(live_server)["sent"] == 0
    assert len(platform.score_posts) == posts_before

    grades[0]["score"] = 9
    changed = push(live_server, teacher, grades)
    assert changed["counts"] == {"queued": 1, "unchanged": 1, "not_sendable": 0}
    assert drain(live_server)["sent"] == 1
    assert scores_by_user(platform, context)[people[0][0].sub] == 9
    assert len(platform.lineitems(context)) == 1


def test_an_lms_outage_delays_grades_and_never_duplicates_them(live_server, platform):
    context, teacher, people = setup_course(platform)
    platform.fail_next_score_posts(4, status=503)
    push(
        live_server,
        teacher,
        [
            {"assignment_id": "ps1", "student_id": body["username"], "score": 3, "max_score": 4}
            for _user, body in people
        ],
    )
    first = GradeWorker(live_server.state()).run_once()
    assert first["retrying"] >= 1
    pending = status(live_server, teacher)
    assert pending["counts"]["pending"] >= 1
    assert any("503" in (g["reason"] or "") for g in pending["grades"])
    drain(live_server)
    assert sorted(scores_by_user(platform, context)) == sorted(u.sub for u, _b in people)
    accepted = [
        p for p in platform.score_posts if p.context_id == context.id and p.status in (200, 204)
    ]
    assert sorted(p.user_id for p in accepted) == sorted(u.sub for u, _b in people)
    assert status(live_server, teacher)["counts"]["sent"] == 3


def test_a_rejected_score_is_failed_with_the_lms_message(live_server, platform):
    context, teacher, people = setup_course(platform)
    rejected = people[1][0].sub
    platform.reject_user(rejected, status=400, message="This student is suspended in the LMS")
    try:
        push(
            live_server,
            teacher,
            [
                {"assignment_id": "ps1", "student_id": body["username"], "score": 1, "max_score": 2}
                for _user, body in people
            ],
        )
        counts = drain(live_server)
    finally:
        platform.accept_user(rejected)
    assert counts["failed"] == 1 and counts["sent"] == 2
    final = status(live_server, teacher)
    [failed] = final["failed"]
    assert failed["student_id"] == people[1][1]["username"]
    assert "suspended" in failed["reason"]
    assert sorted(scores_by_user(platform, context)) == sorted(
        u.sub for u, _b in people if u.sub != rejected
    )
    cli = lti_exchange(
        live_server,
        "grades",
        "status",
        "--course",
        teacher["course_id"],
        "--org",
        str(platform.org_id),
    )
    assert "failed" in cli.stdout and "suspended" in cli.stdout


@pytest.mark.all_backends  # worker claims: conditional UPDATE row counts differ by database
def test_a_worker_killed_mid_batch_loses_nothing(live_server, platform):
    context, teacher, people = setup_course(platform)
    push(
        live_server,
        teacher,
        [
            {"assignment_id": "ps1", "student_id": body["username"], "score": 2, "max_score": 2}
            for _user, body in people
        ],
    )
    crashed = GradeWorker(live_server.state(), worker_id="crashed")
    claimed = crashed.claim()
    assert len(claimed) >= 3  # it took the batch, then died without sending
    other = GradeWorker(live_server.state(), worker_id="other")
    assert other.claim() == []  # claimed entries are not sent twice at once
    with live_server.state().session_factory() as session:  # the crashed claim expires
        session.execute(
            update(GradeOutbox)
            .where(GradeOutbox.locked_by == "crashed")
            .values(locked_until=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    drain(live_server)
    posts = [p for p in platform.score_posts if p.context_id == context.id]
    assert sorted(p.user_id for p in posts) == sorted(u.sub for u, _b in people)
    assert status(live_server, teacher)["counts"]["sent"] == 3


def test_not_sendable_students_are_reported(live_server, platform):
    context, teacher, people = setup_course(platform, students=1)
    tester = LmsUser.make("Test", "Student")
    test_body = launched(
        platform.launch(
            requests.Session(), user=tester, roles=[LEARNER, TEST_USER], context=context
        )
    )
    answer = push(
        live_server,
        teacher,
        [
            {
                "assignment_id": "ps1",
                "student_id": people[0][1]["username"],
                "score": 1,
                "max_score": 1,
            },
            {
                "assignment_id": "ps1",
                "student_id": test_body["username"],
                "score": 1,
                "max_score": 1,
            },
            {"assignment_id": "ps1", "student_id": "nobody-here", "score": 1, "max_score": 1},
        ],
    )
    assert answer["counts"] == {"queued": 1, "unchanged": 0, "not_sendable": 2}
    reasons = {g["student_id"]: g["reason"] for g in answer["grades"]}
    assert "test user" in reasons[test_body["username"]]
    assert "not enrolled" in reasons["nobody-here"]
    assert drain(live_server)["sent"] == 1


def test_roster_sync_imports_two_pages_and_a_student_who_never_launched(live_server, platform):
    context, teacher, people = setup_course(platform, students=1)
    newcomer = LmsUser.make("Never", "Launched")
    leaver = LmsUser.make("Gone", "Away")
    platform.set_roster(
        context, [newcomer, (leaver, LEARNER, "Inactive"), (LmsUser.make("Tee", "Ay"), INSTRUCTOR)]
    )
    assert len(platform.members(context)) >= 5  # more than two pages of two
    synced = lti_exchange(
        live_server,
        "roster",
        "sync",
        "--course",
        teacher["course_id"],
        "--org",
        str(platform.org_id),
        "--json",
    )
    assert '"members"' in synced.stdout
    members = requests.get(
        f"{live_server.url}/api/v1/courses/{teacher['course_id']}/members",
        headers=bearer(teacher["access_token"]),
        timeout=60,
    ).json()["members"]
    by_lms_id = {m["lms_user_id"]: m for m in members}
    assert by_lms_id[newcomer.sub]["active"] is True
    assert by_lms_id[newcomer.sub]["role"] == "Learner"
    assert by_lms_id[leaver.sub]["active"] is False
    username = by_lms_id[newcomer.sub]["username"]
    answer = push(
        live_server,
        teacher,
        [{"assignment_id": "ps1", "student_id": username, "score": 4, "max_score": 5}],
    )
    assert answer["counts"]["queued"] == 1
    assert drain(live_server)["sent"] == 1
    assert scores_by_user(platform, context) == {newcomer.sub: 4}


def test_an_instructor_launch_syncs_the_roster_by_itself(live_server, platform):
    context = LmsContext.make()
    newcomer = LmsUser.make("Auto", "Synced")
    platform.set_roster(context, [newcomer])
    teacher = launched(
        platform.launch(requests.Session(), roles=[INSTRUCTOR], context=context), "Instructor"
    )
    # The launch asked for a sync; the worker's roster job performs it (after older requests).
    worker = GradeWorker(live_server.state())
    for _ in range(50):
        if not requested_courses(live_server.state()):
            break
        worker.jobs.run_now("roster-sync")
    members = requests.get(
        f"{live_server.url}/api/v1/courses/{teacher['course_id']}/members",
        headers=bearer(teacher["access_token"]),
        timeout=60,
    ).json()["members"]
    assert newcomer.sub in {m["lms_user_id"] for m in members}
