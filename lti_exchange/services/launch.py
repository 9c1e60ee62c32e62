"""What an LTI launch does to the database: find its registration, provision the user, course
and enrolment (again on a concurrent first launch), list what deep linking may offer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lti_exchange.config import Settings
from lti_exchange.models import Assignment, LtiRegistration
from lti_exchange.services.due_dates import record_lms_due_date
from lti_exchange.services.provisioning import (
    ProvisionedLaunch,
    RetryProvisioning,
    provision_launch,
)
from lti_exchange.services.resource_links import record_resource_link
from lti_exchange.services.retry import run_with_retry


def registration_for(session: Session, issuer: str, client_id: str) -> LtiRegistration:
    """The registration of the LMS (``issuer``, ``client_id``) that pylti1p3 has validated."""
    return session.execute(
        select(LtiRegistration).where(
            LtiRegistration.issuer == issuer, LtiRegistration.client_id == client_id
        )
    ).scalar_one()


def record_launch(
    session: Session, settings: Settings, issuer: str, client_id: str, claims: dict[str, Any]
) -> tuple[LtiRegistration, ProvisionedLaunch]:
    """Provision the launch's user, course and enrolment (flushed; the caller commits).

    A concurrent first launch of the same user or course (or a deadlock) rolls the unit back
    and runs it again on fresh data (``services.retry``); ``LaunchRejected`` passes through.
    """

    def unit() -> tuple[LtiRegistration, ProvisionedLaunch]:
        registration = registration_for(session, issuer, client_id)
        launched = provision_launch(
            session,
            registration,
            claims,
            username_rule=settings.lti_username_rule,
            course_id_param=settings.lti_course_id_param,
        )
        link = record_resource_link(session, launched.course, claims)
        record_lms_due_date(session, launched.course, link, claims)  # custom due_at
        session.flush()
        return registration, launched

    return run_with_retry(session, unit, what="record this launch", also=(RetryProvisioning,))


def deep_link_choices(session: Session, course_id: int) -> list[str]:
    """The names of the course's released assignments, in order: what deep linking offers."""
    return list(
        session.execute(
            select(Assignment.name)
            .where(Assignment.course_id == course_id, Assignment.released.is_(True))
            .order_by(Assignment.name)
        ).scalars()
    )
