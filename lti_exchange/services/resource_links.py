"""Resource links (where a course launches the tool) → nbgrader assignments, and where an
assignment's grades go in the LMS.

Each resource-link launch records its link: id, title, the AGS claim's ``lineitem`` (the link's
own gradebook column) and the scopes the claim offered. A link names its assignment with the
custom parameter ``nbgrader_assignment_id`` (our deep-linking response sets it), else an
instructor binds it once on the landing page.

``grade_targets`` decides where an assignment's grades go: the ``lineitem`` of every link bound to
it (coupled grading; one column per distinct URL), else a line item the worker finds or creates
in the course's ``lineitems`` container. Scopes are only ever those the platform offered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lti_exchange.errors import Conflict, Forbidden, NotFound
from lti_exchange.identifiers import is_valid_identifier, validate_identifier
from lti_exchange.lti.platform_client import (
    SCOPE_LINEITEM,
    SCOPE_LINEITEM_READONLY,
    SCOPE_SCORE,
)
from lti_exchange.models import (
    STAFF_ROLES,
    Assignment,
    Course,
    Enrolment,
    Grade,
    LineItem,
    ResourceLink,
)
from lti_exchange.models.grade import NOT_SENDABLE, PENDING
from lti_exchange.models.resource_link import BOUND_BY_CUSTOM, BOUND_BY_INSTRUCTOR
from lti_exchange.models.types import utcnow
from lti_exchange.services.grade_outbox import arm
from lti_exchange.services.provisioning import AGS_CLAIM, CLAIM, RetryProvisioning

ASSIGNMENT_PARAM = "nbgrader_assignment_id"
RESOURCE_LINK_REQUEST = "LtiResourceLinkRequest"

ENABLE_GRADES = (
    "enable 'Grade sync' / 'Assignment and Grade Services' (AGS) for this tool in the LMS "
    "course's or site's LTI settings, then launch the tool again from the course"
)
NO_SCORE_SCOPE = (
    "the LMS did not grant the score service to this tool (scope …/lti-ags/scope/score): "
    + ENABLE_GRADES
)
NO_ENDPOINT = (
    "the course has no LMS gradebook endpoint: an instructor must launch the tool from the LMS "
    "course (with grades enabled) first"
)

# Not-sendable reasons that a link bound by an instructor may lift (their fixed beginnings).
UNBOUND_LINKS = "the LMS course has graded links not yet tied to an nbgrader assignment"
NO_COLUMN = "the LMS gave no gradebook column"
CANNOT_CREATE = "the LMS lets the tool read but not create gradebook columns"
WAITING_FOR_A_LINK = (UNBOUND_LINKS, NO_COLUMN, CANNOT_CREATE)


# -- recording launches ------------------------------------------------------------------------
def _custom_assignment(claims: dict[str, Any]) -> str | None:
    custom = claims.get(CLAIM + "custom")
    value = custom.get(ASSIGNMENT_PARAM) if isinstance(custom, dict) else None
    if isinstance(value, str) and is_valid_identifier(value.strip()):
        return value.strip()
    return None  # absent, an unsubstituted "$Variable", or not an nbgrader id


def record_resource_link(
    session: Session, course: Course, claims: dict[str, Any]
) -> ResourceLink | None:
    """Upsert the launch's resource link (None for other messages, e.g. deep linking).

    Also records the scopes the AGS claim offered on the course (``course.ags_scopes``), so the
    worker asks for no other. A concurrent first launch of the same link raises
    ``RetryProvisioning`` (the caller runs its unit again).
    """
    ags = claims.get(AGS_CLAIM)
    offered = None
    if isinstance(ags, dict):
        offered = [s for s in ags.get("scope") or [] if isinstance(s, str)]
        course.ags_scopes = offered
    if claims.get(CLAIM + "message_type") != RESOURCE_LINK_REQUEST:
        return None
    claim = claims.get(CLAIM + "resource_link")
    link_id = claim.get("id") if isinstance(claim, dict) else None
    if not isinstance(link_id, str) or not link_id or len(link_id) > 255:
        return None  # the launch check refuses these; nothing to record
    row = session.execute(
        select(ResourceLink).where(
            ResourceLink.course_id == course.id, ResourceLink.lti_resource_link_id == link_id
        )
    ).scalar_one_or_none()
    if row is None:
        try:
            with session.begin_nested():
                row = ResourceLink(course_id=course.id, lti_resource_link_id=link_id)
                session.add(row)
        except IntegrityError as exc:
            raise RetryProvisioning(str(exc)) from exc
    title = claim.get("title") if isinstance(claim, dict) else None
    row.title = str(title)[:255] if title else None
    if isinstance(ags, dict):  # a launch without the claim says nothing about the column:
        # keep what earlier launches recorded (a learner's launch, or a platform that sends
        # the claim to some roles only, must not decouple the link and make a second column)
        lineitem = ags.get("lineitem")
        row.lineitem_url = str(lineitem)[:1000] if isinstance(lineitem, str) and lineitem else None
        row.ags_scopes = offered
    wanted = _custom_assignment(claims)
    if wanted is not None:
        row.assignment_name, row.bound_by = wanted, BOUND_BY_CUSTOM
    elif row.bound_by == BOUND_BY_CUSTOM:  # the LMS no longer names one: an instructor may
        row.assignment_name = row.bound_by = None
    row.updated_at = utcnow()
    session.flush()
    return row


def launch_link(session: Session, course_id: int, claims: dict[str, Any]) -> ResourceLink | None:
    """The resource link a launch recorded (None for deep linking and the like)."""
    claim = claims.get(CLAIM + "resource_link")
    link_id = claim.get("id") if isinstance(claim, dict) else None
    if claims.get(CLAIM + "message_type") != RESOURCE_LINK_REQUEST or not isinstance(link_id, str):
        return None
    return session.execute(
        select(ResourceLink).where(
            ResourceLink.course_id == course_id, ResourceLink.lti_resource_link_id == link_id
        )
    ).scalar_one_or_none()


# -- binding by an instructor ------------------------------------------------------------------
def bindable_assignments(session: Session, course_id: int) -> list[str]:
    """The course's assignments (released or not, and those with grades), sorted."""
    names = set(
        session.execute(select(Assignment.name).where(Assignment.course_id == course_id)).scalars()
    )
    names.update(
        session.execute(
            select(Grade.assignment_name).where(Grade.course_id == course_id).distinct()
        ).scalars()
    )
    return sorted(names)


def bind_resource_link(
    session: Session, link_row_id: int, user_id: int, assignment: object
) -> ResourceLink:
    """Bind the link to ``assignment`` for an instructor or TA of its course (live role).

    A link the LMS names through the custom parameter keeps that assignment (409).
    """
    name = validate_identifier(assignment, "assignment")
    link = session.get(ResourceLink, link_row_id)
    if link is None:
        raise NotFound("This LMS link is no longer known; launch it again.", code="link_not_found")
    enrolment = session.execute(
        select(Enrolment).where(Enrolment.user_id == user_id, Enrolment.course_id == link.course_id)
    ).scalar_one_or_none()
    if enrolment is None or not enrolment.active or enrolment.role not in STAFF_ROLES:
        raise Forbidden(
            "Only the course's instructors and teaching assistants can choose the assignment "
            "of an LMS link.",
            code="role_forbidden",
        )
    if link.bound_by == BOUND_BY_CUSTOM:
        raise Conflict(
            f"The LMS names this link's assignment ({link.assignment_name}) in its custom "
            f"parameter {ASSIGNMENT_PARAM}; change it there.",
            code="link_bound_by_lms",
        )
    link.assignment_name, link.bound_by = name, BOUND_BY_INSTRUCTOR
    link.updated_at = utcnow()
    requeue_not_sendable(session, link.course_id)
    session.commit()
    return link


def requeue_not_sendable(session: Session, course_id: int) -> int:
    """Queue again the course's grades that waited for a link to be bound (the worker decides
    anew whether they can go); how many. Grades not sendable for other reasons (a test user,
    no LMS user id) stay as they are. The caller commits."""
    now = utcnow()
    rows = session.execute(
        select(Grade.id, Grade.reason).where(
            Grade.course_id == course_id, Grade.status == NOT_SENDABLE
        )
    ).all()
    waiting = [gid for gid, reason in rows if (reason or "").startswith(WAITING_FOR_A_LINK)]
    if waiting:
        session.execute(
            update(Grade)
            .where(Grade.id.in_(waiting))
            .values(status=PENDING, reason=None, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        arm(session, waiting, now)
    return len(waiting)


# -- where grades go ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GradeTarget:
    """Where one assignment's grades go in the LMS, and what the platform lets the tool do."""

    assignment: str
    lineitem_urls: tuple[str, ...] = ()  # coupled columns (the links' own ``lineitem``)
    lineitems_url: str | None = None  # the course's container, to find or create a column
    scopes: frozenset[str] = field(default_factory=frozenset)
    resource_link_id: str | None = None  # for a created column: the first bound link
    # Graded LMS links of the course bound to no assignment yet (their titles): any of them
    # may be this assignment's column, so the tool makes none of its own meanwhile.
    unbound_graded_links: tuple[str, ...] = ()
    has_own_column: bool = False  # the worker already found or made the assignment's column

    @property
    def can_find(self) -> bool:
        return bool({SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY} & self.scopes)

    @property
    def can_create(self) -> bool:
        return SCOPE_LINEITEM in self.scopes

    def lookup_scope(self) -> str:
        """The scope to read line items with: ``lineitem`` if offered, else the read-only one."""
        return SCOPE_LINEITEM if self.can_create else SCOPE_LINEITEM_READONLY

    def problem(self) -> str | None:
        """Why grades for this assignment cannot reach the LMS now (None: they can)."""
        if not self.lineitem_urls and not self.lineitems_url and not self.scopes:
            return NO_ENDPOINT
        if SCOPE_SCORE not in self.scopes:
            return NO_SCORE_SCOPE
        if self.lineitem_urls:
            return None
        if self.unbound_graded_links and not self.has_own_column:
            return unbound_links_reason(self.assignment, self.unbound_graded_links)
        if not self.lineitems_url or not self.can_find:
            return (
                f"{NO_COLUMN} for assignment {self.assignment}: no LMS "
                "link bound to it carries one, and the LMS does not let the tool find or create "
                "columns (line-item service). Add the assignment with deep linking and a maximum "
                "score, or bind a graded LMS link to it on the tool's page (launch the link as "
                "an instructor), or enable line items for the tool; then push the grades again"
            )
        return None

    def cannot_create(self) -> str:
        return (
            f"{CANNOT_CREATE}, and none exists for "
            f"assignment {self.assignment}: add it with deep linking and a maximum score, bind "
            "a graded LMS link to it, or grant the tool the line-item scope (…/scope/lineitem); "
            "then push the grades again"
        )


def grade_targets(session: Session, course: Course, assignments: Iterable[str]) -> dict:
    """``{assignment: GradeTarget}`` for the course: two queries (the course's links, bound to
    these assignments or graded and unbound; the columns the worker remembers)."""
    wanted = set(assignments)
    if not wanted:
        return {}
    links = (
        session.execute(
            select(ResourceLink)
            .where(
                ResourceLink.course_id == course.id,
                or_(
                    ResourceLink.assignment_name.in_(wanted),
                    and_(
                        ResourceLink.assignment_name.is_(None),
                        ResourceLink.lineitem_url.is_not(None),
                    ),
                ),
            )
            .order_by(ResourceLink.id)
        )
        .scalars()
        .all()
    )
    own_columns = set(
        session.execute(
            select(LineItem.assignment_name).where(
                LineItem.course_id == course.id, LineItem.assignment_name.in_(wanted)
            )
        ).scalars()
    )
    unbound = tuple(
        link.title or link.lti_resource_link_id for link in links if link.assignment_name is None
    )
    scopes = frozenset(course.ags_scopes or [])
    out: dict[str, GradeTarget] = {}
    for name in wanted:
        bound = [link for link in links if link.assignment_name == name]
        urls = tuple(dict.fromkeys(link.lineitem_url for link in bound if link.lineitem_url))
        out[name] = GradeTarget(
            assignment=name,
            lineitem_urls=urls,
            lineitems_url=course.ags_lineitems_url,
            scopes=scopes,
            resource_link_id=bound[0].lti_resource_link_id if bound else None,
            unbound_graded_links=unbound,
            has_own_column=name in own_columns,
        )
    return out


def unbound_links_reason(assignment: str, titles: tuple[str, ...]) -> str:
    """Why no column of the tool's own is made while graded LMS links are unbound."""
    shown = ", ".join(f"'{t}'" for t in titles[:5]) + (" and more" if len(titles) > 5 else "")
    return (
        f"{UNBOUND_LINKS} ({shown}); "
        f"one of them may be the gradebook column of {assignment}, so the tool makes no column "
        "of its own. Launch each of these links from the LMS as an instructor and choose its "
        f"assignment on the tool's page (or set the custom parameter {ASSIGNMENT_PARAM} on the "
        "link); waiting grades are then sent by themselves"
    )


def grade_target(session: Session, course: Course, assignment: str) -> GradeTarget:
    return grade_targets(session, course, [assignment])[assignment]
