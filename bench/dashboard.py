"""The instructor dashboard at course scale: 300 students × 30 assignments (by default).

Builds the course in a fresh SQLite database (a temporary data directory) through the service's
own code (provisioning, releases, fetches, submissions, feedback-free grades with one failure per
assignment, due dates and extensions), then renders the dashboard page (``POST /lti/dashboard``
with a page session), its JSON twin (``GET /api/v1/courses/{c}/dashboard``) and one student's
drill-down in the Flask app, and prints each one's time (median of ``--runs``) and SQL query count.

Run ``.venv/bin/python bench/dashboard.py [--students 300] [--assignments 30]``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import update  # noqa: E402

from lti_exchange.app_objects import build_app_objects  # noqa: E402
from lti_exchange.config import load_settings  # noqa: E402
from lti_exchange.lti.dashboard_views import open_page_session  # noqa: E402
from lti_exchange.lti.store import DatabaseStore  # noqa: E402
from lti_exchange.migrate import upgrade  # noqa: E402
from lti_exchange.models import Grade  # noqa: E402
from lti_exchange.services.assignments import AssignmentService  # noqa: E402
from lti_exchange.services.authorisation import authorise_course  # noqa: E402
from lti_exchange.services.context import ServiceContext  # noqa: E402
from lti_exchange.services.due_dates import set_due_date, set_extension  # noqa: E402
from lti_exchange.services.grades import GradeInput, GradeService  # noqa: E402
from lti_exchange.services.submissions import SubmissionService  # noqa: E402
from tests.factories import issue_access_token  # noqa: E402

COURSE = "bench101"
NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build(objects, students: int, assignments: int) -> tuple[str, int, int]:
    """The course through the services; returns the instructor's token, user id and course id."""
    staff_token = issue_access_token(objects, "teacher", COURSE, "Instructor")
    tokens = [
        issue_access_token(objects, f"s{i:03d}", COURSE, "Learner", name=f"Student {i}")
        for i in range(students)
    ]
    archive = tar_bytes({"problem1.ipynb": NOTEBOOK})
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with objects.session_factory() as session:

        def caller(token: str):
            return authorise_course(
                session, objects.tokens.verify(token), COURSE, ("Instructor", "Learner")
            )

        def ctx(clock=None) -> ServiceContext:
            kwargs = {"clock": clock} if clock else {}
            return ServiceContext(session, objects.storage, objects.limits, **kwargs)

        staff = caller(staff_token)
        people = [caller(t) for t in tokens]
        grades = []
        for a in range(assignments):
            name = f"ps{a:02d}"
            AssignmentService(ctx()).release(staff, name, io.BytesIO(archive))
            due = start + timedelta(days=7 * a + 7)
            set_due_date(session, staff.course, staff.user.id, name, due)
            for i, person in enumerate(people):
                if i % 10 == 9:
                    continue  # one in ten never fetches nor submits
                _release, handle = AssignmentService(ctx()).open_current_release(person, name)
                handle.close()
                session.commit()
                # spread over the week before the deadline; one in seven a little late
                moment = due - timedelta(hours=150) + timedelta(minutes=17 * i)
                SubmissionService(ctx(lambda m=moment: m)).submit(person, name, io.BytesIO(archive))
                grades.append(GradeInput(name, person.user.username, float(i % 11), 10.0))
            set_extension(session, staff.course, staff.user.id, name, people[0].user.username, due)
        GradeService(ctx()).push(staff, grades)
        session.execute(
            update(Grade).where(Grade.student_id == "s001").values(status="failed", reason="LMS")
        )
        session.commit()
        return staff_token, staff.user.id, staff.course.id


def timed(call, runs: int) -> tuple[float, int, int]:
    times, answer = [], None
    for _ in range(runs):
        began = time.perf_counter()
        answer = call()
        times.append(time.perf_counter() - began)
    assert answer is not None and answer.status_code == 200, answer
    return statistics.median(times), int(answer.headers["X-Query-Count"]), len(answer.data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--assignments", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lte-dashboard-bench-") as data_dir:
        settings = load_settings(
            {
                "LTI_EXCHANGE_DATA_DIR": data_dir,
                "LTI_EXCHANGE_DATABASE_URL": f"sqlite:///{data_dir}/bench.sqlite3",
                "LTI_EXCHANGE_EXPOSE_QUERY_COUNT": "true",
                "LTI_EXCHANGE_BASE_URL": "http://127.0.0.1:1",
            }
        )
        objects = build_app_objects(settings)
        upgrade(objects.engine)
        began = time.perf_counter()
        token, user_id, course_id = build(objects, args.students, args.assignments)
        print(
            f"built {args.students} students × {args.assignments} assignments in "
            f"{time.perf_counter() - began:.1f} s (fresh SQLite database)"
        )
        from lti_exchange.web.app import create_app

        app = create_app(settings)
        client = app.test_client()
        page_session = open_page_session(user_id, course_id, DatabaseStore(objects.session_factory))
        calls = {
            "page POST /lti/dashboard": lambda: client.post(
                "/lti/dashboard", data={"page_session": page_session}
            ),
            "JSON GET /api/v1/courses/{c}/dashboard": lambda: client.get(
                f"/api/v1/courses/{COURSE}/dashboard",
                headers={"Authorization": f"Bearer {token}"},
            ),
            "student POST /lti/dashboard/student": lambda: client.post(
                "/lti/dashboard/student", data={"page_session": page_session, "student": "s001"}
            ),
        }
        for label, call in calls.items():
            seconds, queries, size = timed(call, args.runs)
            print(f"{label:42s} {seconds * 1000:8.1f} ms  {queries:3d} queries  {size:9d} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
