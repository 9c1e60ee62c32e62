"""The class roster from the LMS (Names and Role Provisioning Services)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lti_exchange.lti.platform_client import PlatformClient
from lti_exchange.lti.provision import CLAIM, username_candidates
from lti_exchange.lti.roles import map_roles
from lti_exchange.lti.store import DatabaseStore
from lti_exchange.models import Course, Enrolment, LtiRegistration, User
from lti_exchange.models.types import utcnow
from lti_exchange.state import ExchangeState

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


def sync_roster(state: ExchangeState, session: Session, course: Course) -> RosterResult:
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
        user = session.execute(
            select(User).where(User.org_id == course.org_id, User.lti_sub == sub)
        ).scalar_one_or_none()
        if user is None:
            claims = {
                "sub": sub,
                "email": member.get("email"),
                "name": member.get("name"),
                CLAIM + "lis": {"person_sourcedid": member.get("lis_person_sourcedid")},
            }
            for candidate in username_candidates(claims, rule):
                taken = session.execute(
                    select(User.id).where(User.org_id == course.org_id, User.username == candidate)
                ).first()
                if taken is None:
                    user = User(org_id=course.org_id, username=candidate, lti_sub=sub)
                    session.add(user)
                    session.flush()
                    result.created += 1
                    break
            if user is None:
                continue
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
    gone = session.execute(
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
    )
    result.deactivated = gone.rowcount
    course.roster_synced_at = utcnow()
    session.commit()
    return result


def sync_in_background_if_due(state: ExchangeState, course_id: int) -> bool:
    """After an instructor's launch: sync the roster in a thread, at most once per interval."""
    interval = state.settings.roster_sync_interval
    with state.session_factory() as session:
        due = utcnow() - timedelta(seconds=interval)
        claimed = session.execute(
            update(Course)
            .where(
                Course.id == course_id,
                Course.nrps_memberships_url.is_not(None),
                (Course.roster_synced_at.is_(None)) | (Course.roster_synced_at < due),
            )
            .values(roster_synced_at=utcnow())
        )
        session.commit()
        if claimed.rowcount != 1:
            return False

    def run() -> None:
        try:
            with state.session_factory() as session:
                course = session.get(Course, course_id)
                result = sync_roster(state, session, course)
                log.info("roster of course %s synced: %s", course.code, result.as_dict())
        except Exception:  # noqa: BLE001 - a background sync must never break a launch
            log.exception("roster sync of course %s failed", course_id)

    threading.Thread(target=run, daemon=True, name="roster-sync").start()
    return True
