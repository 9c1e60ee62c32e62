"""The one place that creates and updates organisations, users, courses and enrolments.

Two ways in: ``provision`` (an operator's ``token issue``: names given) and ``provision_launch``
(an LTI launch: names derived from the claims); ``lti_user`` is shared with the roster sync.
All are idempotent upserts, safe against concurrent first launches (savepoints; a clash the
transaction cannot see raises ``RetryProvisioning`` so the caller runs the unit again)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lti_exchange.errors import InvalidRequest, NotFound
from lti_exchange.identifiers import MAX_IDENTIFIER_LENGTH, is_valid_identifier, validate_identifier
from lti_exchange.lti.roles import LaunchRoles, map_roles
from lti_exchange.models import (
    COURSE_ROLES,
    STAFF_ROLES,
    Course,
    Enrolment,
    LtiRegistration,
    Organisation,
    User,
)
from lti_exchange.services.course_mapping import (
    CourseMappingConflict,
    candidates,
    follow_launch,
    requested_code,
    slug,
)


def _get_or_create(session: Session, model, lookup: dict, defaults: dict | None = None):
    query = select(model).filter_by(**lookup)
    row = session.execute(query).scalar_one_or_none()
    if row is not None:
        return row, False
    try:
        with session.begin_nested():
            row = model(**lookup, **(defaults or {}))
            session.add(row)
        return row, True
    except IntegrityError:
        return session.execute(query).scalar_one(), False


def find_or_create_org(session: Session, org: str) -> Organisation:
    """An organisation by numeric id (must exist) or by name (created when new)."""
    if org.isdigit():
        found = session.get(Organisation, int(org))
        if found is None:
            raise NotFound(f"No organisation with id {org}.", code="org_not_found")
        return found
    if not org.strip():
        raise InvalidRequest("The organisation name is empty.")
    row, _ = _get_or_create(session, Organisation, {"name": org.strip()})
    return row


def provision(
    session: Session,
    *,
    org: Organisation,
    username: str,
    course_code: str,
    role: str,
    course_title: str | None = None,
    lms_user_id: str | None = None,
    name: str | None = None,
    email: str | None = None,
) -> Enrolment:
    """Upsert the user, course and an active enrolment with ``role``; return the enrolment."""
    validate_identifier(username, "student")
    validate_identifier(course_code, "course")
    if role not in COURSE_ROLES:
        raise InvalidRequest(f"Unknown role {role!r}; use one of {', '.join(COURSE_ROLES)}.")
    user, _ = _get_or_create(session, User, {"org_id": org.id, "username": username})
    for attr, value in (("lms_user_id", lms_user_id), ("name", name), ("email", email)):
        if value is not None:
            setattr(user, attr, value)
    course, _ = _get_or_create(session, Course, {"org_id": org.id, "code": course_code})
    if course_title is not None:
        course.title = course_title
    enrolment, _ = _get_or_create(
        session, Enrolment, {"user_id": user.id, "course_id": course.id}, {"role": role}
    )
    enrolment.role = role
    enrolment.active = True
    session.flush()
    return enrolment


# -- from an LTI launch ------------------------------------------------------------------------
CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"


class LaunchRejected(ValueError):
    """The launch is valid LTI but cannot be used (e.g. no user, no course)."""


class RetryProvisioning(RuntimeError):
    """A concurrent launch created the same user or course: retry in a fresh transaction."""


def sanitise(value: str, fallback_prefix: str) -> str:
    """A safe identifier from ``value`` (kept when already valid; a short hash keeps it unique
    when characters had to be replaced)."""
    if is_valid_identifier(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.@-]+", "-", value).strip("-.")
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    if not cleaned or not is_valid_identifier(cleaned[:1] + "x"):
        cleaned = fallback_prefix
    cleaned = cleaned[: MAX_IDENTIFIER_LENGTH - 9]
    return f"{cleaned}-{digest}"


def username_candidates(claims: dict[str, Any], rule: str) -> list[str]:
    """Candidate nbgrader student ids from the claims, in the order the rule names them."""
    out: list[str] = []
    for item in (r.strip() for r in rule.split(",") if r.strip()):
        value: Any = None
        if item == "email_local_part":
            email = claims.get("email")
            value = email.split("@", 1)[0] if isinstance(email, str) and "@" in email else None
        elif item == "lis_person_sourcedid":
            value = (claims.get(CLAIM + "lis") or {}).get("person_sourcedid")
        elif item == "sub":
            sub = str(claims.get("sub", ""))
            value = sub if is_valid_identifier(sub) else None
            if value is None and sub:
                value = "user-" + hashlib.sha256(sub.encode()).hexdigest()[:16]
        else:
            value = claims.get(item) or (claims.get(CLAIM + "custom") or {}).get(item)
        if isinstance(value, str) and value.strip():
            out.append(sanitise(value.strip(), "user"))
    sub = str(claims.get("sub", ""))
    out.append("user-" + hashlib.sha256(sub.encode()).hexdigest()[:16])
    return out


@dataclass
class ProvisionedLaunch:
    user: User
    course: Course
    enrolment: Enrolment
    roles: LaunchRoles


def provision_launch(
    session: Session,
    registration: LtiRegistration,
    claims: dict[str, Any],
    *,
    username_rule: str,
    course_id_param: str,
) -> ProvisionedLaunch:
    """Upsert user (by organisation + ``sub``), course (by organisation + context id) and the
    enrolment, with the role of this launch and the AGS/NRPS endpoints it carried."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise LaunchRejected("The launch names no user (sub); anonymous launches are refused.")
    context = claims.get(CLAIM + "context") or {}
    if not isinstance(context, dict) or not context.get("id"):
        raise LaunchRejected(
            "The launch has no course context. Add the tool to a course in your LMS and launch "
            "it from there."
        )
    roles = map_roles(claims.get(CLAIM + "roles"))
    org_id = registration.org_id
    rule = registration.username_claim or username_rule
    user = _user(session, org_id, sub, claims, rule, roles)
    course = _course(session, org_id, claims, context, course_id_param, roles.course_role)
    enrolment = session.execute(
        select(Enrolment).where(Enrolment.user_id == user.id, Enrolment.course_id == course.id)
    ).scalar_one_or_none()
    if enrolment is None:
        enrolment = Enrolment(user_id=user.id, course_id=course.id, role=roles.course_role)
        session.add(enrolment)
    enrolment.role = roles.course_role
    enrolment.active = True
    session.flush()
    return ProvisionedLaunch(user=user, course=course, enrolment=enrolment, roles=roles)


def _user(
    session: Session,
    org_id: int,
    sub: str,
    claims: dict[str, Any],
    rule: str,
    roles: LaunchRoles,
) -> User:
    user, _created = lti_user(session, org_id, sub, claims, rule)
    user.lms_user_id = sub
    name = claims.get("name") or " ".join(
        part for part in (claims.get("given_name"), claims.get("family_name")) if part
    )
    if name:
        user.name = str(name)[:255]
    if isinstance(claims.get("email"), str):
        user.email = claims["email"][:255]
    user.test_user = roles.test_user
    return user


def lti_user(
    session: Session, org_id: int, sub: str, claims: dict[str, Any], rule: str
) -> tuple[User, bool]:
    """The organisation's user for the LMS user ``sub`` and whether it was created now.

    A new user gets the first candidate id (``username_candidates``) no other user has. Raises
    ``RetryProvisioning`` when a concurrent transaction created a clashing row (this one cannot
    see it yet: run the unit again) and ``LaunchRejected`` when no candidate is free.
    """
    user = session.execute(
        select(User).where(User.org_id == org_id, User.lti_sub == sub)
    ).scalar_one_or_none()
    if user is not None:
        return user, False
    for candidate in username_candidates(claims, rule):
        taken = session.execute(
            select(User.id).where(User.org_id == org_id, User.username == candidate)
        ).first()
        if taken is not None:
            continue  # another user has this id: try the next rule
        try:
            with session.begin_nested():
                user = User(org_id=org_id, username=candidate, lti_sub=sub)
                session.add(user)
        except IntegrityError as exc:
            # The same user (or another user with this id) was created by a concurrent
            # launch or roster sync; this transaction cannot see it yet.
            raise RetryProvisioning(str(exc)) from exc
        return user, True
    raise LaunchRejected("Could not derive a unique student id for this user.")


def _course(
    session: Session,
    org_id: int,
    claims: dict[str, Any],
    context: dict[str, Any],
    course_id_param: str,
    course_role: str,
) -> Course:
    """The context's course: found by context id (following a changed ``nbgrader_course_id``,
    see ``services.course_mapping``), else created with a readable id."""
    context_id = str(context["id"])[:255]
    wanted = requested_code(claims.get(CLAIM + "custom"), course_id_param)
    course = session.execute(
        select(Course).where(Course.org_id == org_id, Course.lti_context_id == context_id)
    ).scalar_one_or_none()
    if course is None:
        label = str(context.get("label") or context.get("title") or "course")
        course = _create_course(session, org_id, context_id, wanted or slug(label))
    elif wanted is not None:
        try:
            follow_launch(
                session,
                course,
                wanted,
                staff=course_role in STAFF_ROLES,
                param=course_id_param,
            )
        except CourseMappingConflict as exc:
            raise LaunchRejected(str(exc)) from exc
        except IntegrityError as exc:  # a concurrent launch renamed it or took the id
            raise RetryProvisioning(str(exc)) from exc
    if context.get("title"):
        course.title = str(context["title"])[:255]
    course.lti_deployment_id = claims.get(CLAIM + "deployment_id")
    ags = claims.get(AGS_CLAIM)
    if isinstance(ags, dict) and ags.get("lineitems"):
        course.ags_lineitems_url = str(ags["lineitems"])[:1000]
        course.ags_scopes = [s for s in ags.get("scope", []) if isinstance(s, str)]
    nrps = claims.get(NRPS_CLAIM)
    if isinstance(nrps, dict) and nrps.get("context_memberships_url"):
        course.nrps_memberships_url = str(nrps["context_memberships_url"])[:1000]
    return course


def _create_course(session: Session, org_id: int, context_id: str, base: str) -> Course:
    """The course for a new LMS context: ``base`` as its code, or ``base`` with a short suffix
    when another context already has that code. Safe against concurrent first launches."""

    def by_context() -> Course | None:
        return session.execute(
            select(Course).where(Course.org_id == org_id, Course.lti_context_id == context_id)
        ).scalar_one_or_none()

    for candidate in candidates(base, context_id):
        existing = session.execute(
            select(Course).where(Course.org_id == org_id, Course.code == candidate)
        ).scalar_one_or_none()
        if existing is not None:
            if existing.lti_context_id in (None, context_id):
                existing.lti_context_id = context_id  # made by an operator first: adopt it
                return existing
            continue
        try:
            with session.begin_nested():
                course = Course(org_id=org_id, code=candidate, lti_context_id=context_id)
                session.add(course)
            return course
        except IntegrityError as exc:
            found = by_context()  # a concurrent launch of the same context made it
            if found is not None:
                return found
            raise RetryProvisioning(str(exc)) from exc
    raise LaunchRejected("Could not derive a unique course id for this LMS course.")
