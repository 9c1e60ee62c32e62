"""Refresh tokens (opaque, stored as SHA-256, rotated on every use) and the token pair we hand
out after a launch or a refresh."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from lti_exchange.app_objects import AppObjects
from lti_exchange.errors import Unauthenticated
from lti_exchange.logging_setup import current_request_id
from lti_exchange.models import Enrolment, RefreshToken
from lti_exchange.models.types import utcnow
from lti_exchange.tokens.access import revocation_instant

log = logging.getLogger(__name__)

PREFIX = "lxr_"
RELAUNCH = "Launch the assignment from your LMS again to sign in."


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_refresh_token(session: Session, enrolment: Enrolment, ttl: int) -> str:
    token = PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    not_before = enrolment.tokens_not_before
    session.add(
        RefreshToken(
            token_hash=_hash(token),
            enrolment_id=enrolment.id,
            # never "before" the last revocation, so it is not mistaken for a revoked one
            created_at=max(now, not_before) if not_before is not None else now,
            expires_at=now + timedelta(seconds=ttl),
        )
    )
    return token


def token_pair(
    objects: AppObjects,
    session: Session,
    enrolment: Enrolment,
    *,
    with_refresh: bool = True,
    ttl: int | None = None,
) -> dict[str, Any]:
    """Mint an access token (and a refresh token) for ``enrolment``: the launch/refresh JSON."""
    user, course = enrolment.user, enrolment.course
    access = objects.tokens.mint(
        user_id=user.id,
        org_id=course.org_id,
        username=user.username,
        course_code=course.code,
        course_title=course.title,
        role=enrolment.role,
        lms_user_id=user.lms_user_id,
        name=user.name,
        email=user.email,
        ttl=ttl,
        not_before=enrolment.tokens_not_before,
    )
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl or objects.settings.access_token_ttl,
        "username": user.username,
        "course_id": course.code,
        "role": enrolment.role,
        "org_id": course.org_id,
    }
    if with_refresh:
        body["refresh_token"] = issue_refresh_token(
            session, enrolment, objects.settings.refresh_token_ttl
        )
    return body


def rotate(objects: AppObjects, session: Session, token: str) -> dict[str, Any]:
    """Trade a refresh token for a new pair. A token used twice revokes the whole family."""
    row = session.execute(
        select(RefreshToken).where(RefreshToken.token_hash == _hash(token)).with_for_update()
    ).scalar_one_or_none()
    now = utcnow()
    if row is None:
        raise Unauthenticated(f"Unknown refresh token. {RELAUNCH}", code="invalid_refresh_token")
    if row.used_at is not None:
        revoked = revoke_enrolments(session, [row.enrolment_id])
        session.commit()
        log.warning(
            "refresh token %d reused: every session of enrolment %d ended (%d refresh token(s) "
            "revoked) (request %s)",
            row.id,
            row.enrolment_id,
            revoked,
            current_request_id(),
        )
        raise Unauthenticated(
            f"This refresh token was already used; for safety all your sessions in this course "
            f"have been ended. {RELAUNCH}",
            code="refresh_token_reused",
        )
    if row.revoked_at is not None:
        raise Unauthenticated(f"Your session has been revoked. {RELAUNCH}", code="revoked")
    if row.expires_at <= now:
        raise Unauthenticated(f"Your session has expired. {RELAUNCH}", code="refresh_token_expired")
    enrolment = session.get(Enrolment, row.enrolment_id)
    if enrolment is None or not enrolment.active:
        raise Unauthenticated(f"Your enrolment has ended. {RELAUNCH}", code="enrolment_inactive")
    not_before = enrolment.tokens_not_before
    if not_before is not None and row.created_at < not_before:
        raise Unauthenticated(f"Your session has been revoked. {RELAUNCH}", code="revoked")
    claimed = session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult; a concurrent refresh spent it first
        session.rollback()
        raise Unauthenticated(
            f"This refresh token was just used by another request. {RELAUNCH}",
            code="refresh_token_reused",
        )
    pair = token_pair(objects, session, enrolment)
    session.commit()
    return pair


def revoke_enrolments(session: Session, enrolment_ids: list[int]) -> int:
    """End every session of these enrolments: their access tokens issued until now (via
    ``Enrolment.tokens_not_before``, which ``auth`` checks) and their live refresh tokens.

    Runs in the caller's transaction; returns how many refresh tokens were revoked.
    """
    if not enrolment_ids:
        return 0
    now = utcnow()
    session.execute(
        update(Enrolment)
        .where(Enrolment.id.in_(enrolment_ids))
        .values(tokens_not_before=revocation_instant(now))
        .execution_options(synchronize_session="fetch")
    )
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.enrolment_id.in_(enrolment_ids), RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount  # type: ignore[attr-defined]  # DML gives a CursorResult
