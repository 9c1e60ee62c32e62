"""The instructor dashboard and the student view, as pages inside the LMS frame.

A launch opens a *page session* (``open_page_session``: a random id, its SHA-256 kept in the
shared key-value store for ``PAGE_SESSION_TTL``) and the landing page carries the id in a hidden
form field (``dashboard_open.html``). Every dashboard request is a form POST with that field: no
cookie (LMS frames drop third-party cookies), no token in a URL, and a cross-site form cannot
know the id (CSRF). The role used is the live enrolment's, on every request.

A page session ends with the enrolment's other sessions: it keeps the millisecond it was opened
(``created_ms``, never below the enrolment's ``tokens_not_before``, as an access token's
``iat_ms``), and ``page_caller`` refuses it once ``token revoke`` or a replayed refresh token
has moved ``tokens_not_before`` past that instant (the rule ``authorise_course`` applies to
access tokens).

Routes (blueprint ``dashboard``): ``POST /lti/dashboard`` (course page, staff),
``/lti/dashboard/student`` (one student, staff), ``/lti/dashboard/due-date``,
``/lti/dashboard/extension``, ``/lti/dashboard/retry`` (staff actions), ``POST /lti/my-assignments``
(the caller's own view, any role).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from flask import Blueprint, make_response, render_template, request
from sqlalchemy import select

from lti_exchange.errors import ApiError, Forbidden, InvalidRequest, Unauthenticated
from lti_exchange.logging_setup import current_request_id
from lti_exchange.lti.dashboard_chart import submissions_chart
from lti_exchange.lti.flask_glue import store
from lti_exchange.lti.headers import lms_page
from lti_exchange.lti.store import DatabaseStore
from lti_exchange.models import STAFF_ROLES, Course, Enrolment, User
from lti_exchange.services.dashboard import (
    course_overview,
    find_student,
    retry_grade,
    student_detail,
)
from lti_exchange.services.due_dates import parse_due_input, set_due_date, set_extension
from lti_exchange.tokens.access import revocation_ms
from lti_exchange.web.current import app_objects, get_session

log = logging.getLogger(__name__)
bp = Blueprint("dashboard", __name__, url_prefix="/lti", template_folder="../templates")

PAGE_SESSION_TTL = 8 * 3600
FIELD = "page_session"
ROLE_WORDS = {"Instructor": "instructor", "TeachingAssistant": "teaching assistant"}


def _key(page_session: str) -> str:
    return "page-session:" + hashlib.sha256(page_session.encode()).hexdigest()


def open_page_session(
    user_id: int,
    course_id: int,
    kv: DatabaseStore | None = None,
    *,
    not_before: datetime | None = None,
) -> str:
    """A new page session for this person in this course (call after the launch commits).

    ``not_before`` is the enrolment's ``tokens_not_before`` as the launch read it: the session's
    ``created_ms`` is never below it, so a session opened right after a revocation (in the same
    millisecond, or on a replica whose clock is behind) is not taken for a revoked one.
    """
    value = secrets.token_urlsafe(32)
    created_ms = int(time.time() * 1000)
    if not_before is not None:
        created_ms = max(created_ms, revocation_ms(not_before))
    (kv or store()).set(
        _key(value),
        {"user_id": user_id, "course_id": course_id, "created_ms": created_ms},
        PAGE_SESSION_TTL,
    )
    return value


@dataclass(frozen=True)
class PageCaller:
    user: User
    course: Course
    role: str
    page_session: str

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES


def _same_origin() -> None:
    """A browser's form POST names its page's origin: it must be ours (defence in depth)."""
    sent = request.headers.get("Origin")
    base = app_objects().settings.public_base_url or request.host_url
    ours = urlsplit(base)
    if sent and sent != "null" and sent != f"{ours.scheme}://{ours.netloc}":
        raise Forbidden(
            "This form was sent from another site, so it was refused. Open the dashboard "
            "from your course in the LMS.",
            code="cross_site_form",
        )


def page_caller(staff: bool) -> PageCaller:
    """The page session of this POST, checked against the live enrolment (401/403)."""
    _same_origin()
    value = request.form.get(FIELD, "")
    saved = store().get(_key(value)) if value and len(value) <= 100 else None
    if not isinstance(saved, dict):
        raise Unauthenticated(
            "This page has expired (it is valid for 8 hours after you open the tool). Open the "
            "tool again from your course in the LMS.",
            code="page_session_expired",
        )
    enrolment = (
        get_session()
        .execute(
            select(Enrolment).where(
                Enrolment.user_id == saved["user_id"], Enrolment.course_id == saved["course_id"]
            )
        )
        .scalar_one_or_none()
    )
    if enrolment is None or not enrolment.active:
        raise Forbidden(
            "You are no longer enrolled in this course. Ask your instructor if this is a mistake.",
            code="enrolment_inactive",
        )
    not_before = enrolment.tokens_not_before
    created_ms = saved.get("created_ms")
    if not_before is not None and (
        not isinstance(created_ms, int) or created_ms < revocation_ms(not_before)
    ):
        raise Unauthenticated(
            "Your sessions in this course have been ended (signed out), so this page no longer "
            "works. Open the tool again from your course in the LMS.",
            code="revoked",
        )
    if staff and enrolment.role not in STAFF_ROLES:
        raise Forbidden(
            "Only the course's instructors and teaching assistants can see the course dashboard "
            "and change due dates or grades. Your own assignments are on 'My assignments'.",
            code="role_forbidden",
        )
    return PageCaller(enrolment.user, enrolment.course, enrolment.role, value)


def _page(template: str, status: int = 200, **values):
    from lti_exchange.lti.views import frame_origins

    response = make_response(render_template(template, **values), status)
    return lms_page(response, frame_origins())


@bp.errorhandler(ApiError)
def _error(error: ApiError):
    log.warning(
        "dashboard request refused: %s %s: %d %s (request %s)",
        request.method,
        request.path,
        error.status,
        error.code,
        current_request_id(),
    )
    return _page("dashboard_error.html", status=error.status, error=error)


def _course_page(caller: PageCaller, notice: str | None = None):
    overview = course_overview(get_session(), caller.course)
    charts = {
        a.name: submissions_chart(
            a.first_submissions,
            a.due_at,
            a.releases[0][1] if a.releases else None,
            len(overview.learners),
        )
        for a in overview.assignments
    }
    return _page(
        "dashboard_course.html",
        me=caller,
        overview=overview,
        charts=charts,
        notice=notice,
        field=FIELD,
        role_words=ROLE_WORDS,
    )


def _student_page(caller: PageCaller, student: object, notice: str | None = None):
    session = get_session()
    user, role = find_student(session, caller.course, student)
    detail = student_detail(session, caller.course, user, role)
    return _page("dashboard_student.html", me=caller, detail=detail, notice=notice, field=FIELD)


@bp.post("/dashboard")
def course_dashboard():
    return _course_page(page_caller(staff=True))


@bp.post("/dashboard/student")
def student_dashboard():
    caller = page_caller(staff=True)
    return _student_page(caller, request.form.get("student"))


@bp.post("/dashboard/due-date")
def due_date_action():
    caller = page_caller(staff=True)
    assignment = request.form.get("assignment")
    due = None if request.form.get("clear") else parse_due_input(request.form.get("due_at"))
    if due is None and not request.form.get("clear"):
        raise InvalidRequest("Enter a due date (UTC), or use 'Clear'.", code="invalid_due_date")
    set_due_date(get_session(), caller.course, caller.user.id, assignment, due)
    notice = f"Due date of {assignment} " + (
        f"set to {due:%Y-%m-%d %H:%M} UTC." if due else "cleared."
    )
    return _course_page(caller, notice)


@bp.post("/dashboard/extension")
def extension_action():
    caller = page_caller(staff=True)
    assignment, student = request.form.get("assignment"), request.form.get("student")
    due = None if request.form.get("clear") else parse_due_input(request.form.get("due_at"))
    if due is None and not request.form.get("clear"):
        raise InvalidRequest(
            "Enter the student's due date (UTC), or use 'Remove extension'.",
            code="invalid_due_date",
        )
    set_extension(get_session(), caller.course, caller.user.id, assignment, student, due)
    notice = (
        f"{student} is due {due:%Y-%m-%d %H:%M} UTC for {assignment}."
        if due
        else f"The extension of {student} for {assignment} was removed."
    )
    return _student_page(caller, student, notice)


@bp.post("/dashboard/retry")
def retry_action():
    caller = page_caller(staff=True)
    assignment, student = request.form.get("assignment"), request.form.get("student")
    retry_grade(get_session(), caller.course, assignment, student)
    return _course_page(caller, f"The grade of {student} for {assignment} is queued again.")


@bp.post("/my-assignments")
def my_assignments():
    caller = page_caller(staff=False)
    detail = student_detail(
        get_session(), caller.course, caller.user, caller.role, released_only=True
    )
    return _page("dashboard_mine.html", me=caller, detail=detail, field=FIELD)
