"""The class roster from the LMS (Names and Role Provisioning Services)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from lti_exchange.app_objects import AppObjects
from lti_exchange.lti.platform_client import PlatformClient
from lti_exchange.lti.roles import map_roles
from lti_exchange.lti.store import DatabaseStore
from lti_exchange.models import Course, Enrolment, LtiRegistration, User
from lti_exchange.models.types import utcnow
from lti_exchange.services.provisioning import CLAIM, LaunchRejected, lti_user

log = logging.getLogger(__name__)


@dataclass
class RosterResult:
    members: int = 0
    created: int = 0
    updated: int = 0
    deactivated: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class RosterUnavailable(RuntimeError):
    """The course has no roster service (no instructor launch with NRPS yet)."""


def sync_roster(state: AppObjects, session: Session, course: Course) -> RosterResult:
    """Import the LMS memberships: users and enrolments with their roles; members that are
    inactive or gone from the LMS roster are marked inactive (their data is kept)."""
    if not course.nrps_memberships_url:
        raise RosterUnavailable(
            f"Course '{course.code}' has no roster service yet: an instructor must launch the "
            "tool from the LMS course first (with Names and Role Provisioning enabled)."
        )
    registration = session.execute(
        select(LtiRegistration).where(LtiRegistration.org_id == course.org_id)
    ).scalar_one()
    client = PlatformClient(registration, state.tool_keys, DatabaseStore(state.session_factory))
    rule = registration.username_claim or state.settings.lti_username_rule
    result = RosterResult()
    started = utcnow()
    seen: set[int] = set()
    for member in client.memberships(course.nrps_memberships_url):
        sub = member.get("user_id")
        if not isinstance(sub, str) or not sub:
            continue
        result.members += 1
        claims = {
            "sub": sub,
            "email": member.get("email"),
            "name": member.get("name"),
            CLAIM + "lis": {"person_sourcedid": member.get("lis_person_sourcedid")},
        }
        try:
            user, created = lti_user(session, course.org_id, sub, claims, rule)
        except LaunchRejected:
            continue  # no free student id for this member
        result.created += created
        user.lms_user_id = sub
        for attr in ("name", "email"):
            if isinstance(member.get(attr), str):
                setattr(user, attr, member[attr][:255])
        roles = map_roles(member.get("roles"))
        user.test_user = user.test_user or roles.test_user
        enrolment = session.execute(
            select(Enrolment).where(Enrolment.user_id == user.id, Enrolment.course_id == course.id)
        ).scalar_one_or_none()
        active = member.get("status", "Active") == "Active"
        if enrolment is None:
            enrolment = Enrolment(user_id=user.id, course_id=course.id, role=roles.course_role)
            session.add(enrolment)
        else:
            result.updated += 1
        enrolment.role, enrolment.active = roles.course_role, active
        session.flush()
        seen.add(user.id)
    # Members the LMS no longer lists have left the course.
    gone = cast(
        "CursorResult[Any]",
        session.execute(
            update(Enrolment)
            .where(
                Enrolment.course_id == course.id,
                Enrolment.active.is_(True),
                Enrolment.user_id.not_in(seen) if seen else Enrolment.id.is_not(None),
                Enrolment.user_id.in_(select(User.id).where(User.lti_sub.is_not(None))),
                Enrolment.updated_at < started,  # not someone who launched during this sync
            )
            .values(active=False)
            .execution_options(synchronize_session=False)
        ),
    )
    result.deactivated = gone.rowcount
    course.roster_synced_at = utcnow()
    session.commit()
    return result
