"""Tokens minted by the service's own code, for tests that need a user without an LMS launch.

``objects`` is the app's shared objects (``LiveServer.state()`` or the Flask app's extension): it
has ``session_factory`` and ``tokens``. The service's modules are imported inside the functions so
that importing this file stays cheap.
"""

from __future__ import annotations

from typing import Any


def find_enrolment(session, username: str, course: str):
    """The enrolment of ``username`` in the course with code ``course`` (it must exist)."""
    from sqlalchemy import select

    from lti_exchange.models import Course, Enrolment, User

    return session.execute(
        select(Enrolment)
        .join(User, User.id == Enrolment.user_id)
        .join(Course, Course.id == Enrolment.course_id)
        .where(User.username == username, Course.code == course)
    ).scalar_one()


def issue_access_token(
    objects: Any,
    username: str,
    course: str,
    role: str = "Learner",
    *,
    org: str = "test-org",
    ttl: int | None = None,
    now: int | None = None,
    **profile: str | None,
) -> str:
    """Provision ``username`` into ``course`` with ``role`` (in ``org``) and mint an access token.

    ``profile`` is ``name``, ``email`` and ``lms_user_id``; ``now`` back-dates the token.
    """
    from lti_exchange.services.provisioning import find_or_create_org, provision

    with objects.session_factory() as session:
        organisation = find_or_create_org(session, org)
        enrolment = provision(
            session, org=organisation, username=username, course_code=course, role=role, **profile
        )
        session.commit()
        return objects.tokens.mint(
            user_id=enrolment.user.id,
            org_id=organisation.id,
            username=username,
            course_id=course,
            course_title=enrolment.course.title,
            role=role,
            lms_user_id=enrolment.user.lms_user_id,
            name=enrolment.user.name,
            email=enrolment.user.email,
            ttl=ttl,
            now=now,
        )


def issue_refresh_token(objects: Any, username: str, course: str) -> str:
    """A refresh token for the existing enrolment of ``username`` in ``course``."""
    from lti_exchange.tokens.refresh import token_pair

    with objects.session_factory() as session:
        pair = token_pair(objects, session, find_enrolment(session, username, course))
        session.commit()
        return pair["refresh_token"]
