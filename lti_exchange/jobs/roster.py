"""Roster syncs asked for by instructor launches and run by the worker (not in web processes).

An instructor's launch calls ``request_roster_sync_if_due``: a conditional update of
``Course.roster_synced_at`` lets one launch per ``roster_sync_interval`` through, and that launch
writes a request into the shared key-value store (``roster-sync:<course id>``). The worker's
``run_roster_requests`` takes each request under a per-course lock (insert-if-absent, so one
worker per course at a time, on every backend and across replicas), removes it and syncs. A sync
that fails is logged; the next instructor launch after the interval asks again. A request no
worker took within ``REQUEST_TTL`` expires (and the purge deletes it).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, update

from lti_exchange.app_objects import AppObjects
from lti_exchange.jobs.requests import pending_ids
from lti_exchange.lti.nrps import RosterUnavailable, sync_roster
from lti_exchange.lti.platform_client import PlatformError
from lti_exchange.lti.store import DatabaseStore
from lti_exchange.models import Course
from lti_exchange.models.types import utcnow

log = logging.getLogger(__name__)

REQUEST_PREFIX = "roster-sync:"
LOCK_PREFIX = "roster-sync-lock:"
REQUEST_TTL = 24 * 3600
LOCK_SECONDS = 900  # longer than any sync; a killed worker's lock lapses after it
POLL_INTERVAL = 5.0


def request_roster_sync_if_due(state: AppObjects, course_id: int) -> bool:
    """After an instructor's launch: ask the worker for a roster sync, at most once per
    ``roster_sync_interval``; True when this call asked."""
    due = utcnow() - timedelta(seconds=state.settings.roster_sync_interval)
    with state.session_factory() as session:
        claimed = cast(
            "CursorResult[Any]",
            session.execute(
                update(Course)
                .where(
                    Course.id == course_id,
                    Course.nrps_memberships_url.is_not(None),
                    (Course.roster_synced_at.is_(None)) | (Course.roster_synced_at < due),
                )
                .values(roster_synced_at=utcnow())
            ),
        )
        session.commit()
    if claimed.rowcount != 1:
        return False
    store = DatabaseStore(state.session_factory)
    store.set(f"{REQUEST_PREFIX}{course_id}", {"course_id": course_id}, REQUEST_TTL)
    return True


def requested_courses(state: AppObjects, limit: int = 20) -> list[int]:
    """Course ids with a pending sync request, oldest request first."""
    return pending_ids(state, REQUEST_PREFIX, limit)


def run_roster_requests(state: AppObjects, worker_id: str, limit: int = 20) -> int:
    """Sync the courses whose roster was asked for; how many this worker synced."""
    store = DatabaseStore(state.session_factory)
    synced = 0
    for course_id in requested_courses(state, limit):
        lock = f"{LOCK_PREFIX}{course_id}"
        if not store.add(lock, worker_id, LOCK_SECONDS):
            continue  # another worker is syncing this course; the request waits for it
        try:
            if store.pop(f"{REQUEST_PREFIX}{course_id}") is None:
                continue  # another worker took and finished it meanwhile
            synced += sync_course(state, course_id)
        finally:
            store.delete(lock)
    return synced


def sync_course(state: AppObjects, course_id: int) -> int:
    """Sync one course's roster, logging the outcome in one line; 1 when it synced, else 0."""
    with state.session_factory() as session:
        course = session.get(Course, course_id)
        if course is None:
            log.info("roster sync skipped: course id %d no longer exists", course_id)
            return 0
        code = course.code
        try:
            result = sync_roster(state, session, course)
        except (RosterUnavailable, PlatformError) as exc:
            session.rollback()
            status = getattr(exc, "status", None)
            log.warning(
                "roster sync of course %s (id %d) failed (LMS status %s): %s; the next "
                "instructor launch after %d s asks again",
                code,
                course_id,
                status if status is not None else "none",
                exc,
                state.settings.roster_sync_interval,
            )
            return 0
        log.info("roster of course %s (id %d) synced: %s", code, course_id, result.as_dict())
        return 1
