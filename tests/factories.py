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
            course_code=course,
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


def registered_app(data_dir, *, auth_login_url: str = "https://lms.example.edu/auth", **env: str):
    """An in-process app (its test client) with these settings and one LMS registration
    (issuer ``https://lms.example.edu``, client ``tool-1``, deployment ``1``)."""
    from lti_exchange import create_app
    from lti_exchange.config import load_settings
    from lti_exchange.lti.registrations import RegistrationInput, upsert_registration

    settings = load_settings(
        {
            "LTI_EXCHANGE_DATA_DIR": str(data_dir),
            **{f"LTI_EXCHANGE_{name.upper()}": value for name, value in env.items()},
        }
    )
    app = create_app(settings)
    with app.extensions["lti_exchange"].session_factory() as session:
        upsert_registration(
            session,
            RegistrationInput(
                issuer="https://lms.example.edu",
                client_id="tool-1",
                deployment_ids=["1"],
                auth_login_url=auth_login_url,
                auth_token_url="https://lms.example.edu/token",
                key_set_url="https://lms.example.edu/jwks",
            ),
        )
        session.commit()
    return app.test_client()
