"""The worker: sends grade outbox entries to the LMS (AGS) with retries and back-off, and runs
the periodic jobs of ``lti_exchange.jobs`` between passes (roster syncs and line-item due-date
reads that launches asked for, purges, sweeps).

Several workers may run at once: each entry is claimed with a conditional update, so no two
workers send it at the same time; a claim expires, so a killed worker loses nothing. The jobs
(roster syncs that launches asked for, purging expired key-value rows and old refresh tokens,
sweeping partial uploads, reading line items' due dates) are safe to run in several workers
too: see each job's module.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lti_exchange.app_objects import AppObjects
from lti_exchange.jobs import lineitem_due_dates, orphans, purge, roster, uploads
from lti_exchange.jobs.periodic import JobRunner, PeriodicJob
from lti_exchange.lti.platform_client import PlatformClient, PlatformError
from lti_exchange.lti.store import DatabaseStore
from lti_exchange.models import Course, Grade, GradeOutbox, LineItem, LtiRegistration, User
from lti_exchange.models.grade import FAILED, NOT_SENDABLE, PENDING, SENT
from lti_exchange.models.types import utcnow
from lti_exchange.observability import count_grade_send
from lti_exchange.services.resource_links import GradeTarget, grade_target

log = logging.getLogger(__name__)

CLAIM_SECONDS = 120
MAX_BACKOFF = 300
LINEITEM_LOCK_SECONDS = 60
NO_LINEITEM = ""  # _lineitem: none exists and the platform forbids creating one


def backoff(attempts: int) -> float:
    return float(min(2 ** max(attempts - 1, 0), MAX_BACKOFF))


def score_timestamp(last: datetime | None) -> datetime:
    """Now, to the millisecond, and strictly after the last score the LMS accepted."""
    now = utcnow().replace(microsecond=(utcnow().microsecond // 1000) * 1000)
    if last is not None and now <= last:
        now = last + timedelta(milliseconds=1)
    return now


def worker_jobs(state: AppObjects, worker_id: str) -> JobRunner:
    """The periodic jobs every worker runs between grade passes."""
    sessions = state.session_factory
    return JobRunner(
        [
            PeriodicJob(
                "roster-sync",
                roster.POLL_INTERVAL,
                lambda: roster.run_roster_requests(state, worker_id),
            ),
            PeriodicJob(
                "lineitem-due-dates",
                lineitem_due_dates.POLL_INTERVAL,
                lambda: lineitem_due_dates.run_lineitem_due_requests(state),
            ),
            PeriodicJob(
                "purge-key-values", purge.PURGE_INTERVAL, lambda: purge.purge_key_values(sessions)
            ),
            PeriodicJob(
                "purge-refresh-tokens",
                purge.PURGE_INTERVAL,
                lambda: purge.purge_refresh_tokens(sessions),
            ),
            PeriodicJob(
                "sweep-partial-uploads",
                uploads.SWEEP_INTERVAL,
                lambda: uploads.sweep_partial_uploads(state),
            ),
            PeriodicJob(
                "sweep-orphan-blobs",
                orphans.SWEEP_INTERVAL,
                lambda: orphans.sweep_orphan_blobs(state),
            ),
        ]
    )


class GradeWorker:
    """One worker: grade passes (``run_once``) and, in ``run_forever``, the periodic jobs."""

    def __init__(self, state: AppObjects, worker_id: str | None = None) -> None:
        self.state = state
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.store = DatabaseStore(state.session_factory)
        self.jobs = worker_jobs(state, self.worker_id)

    # -- claiming -------------------------------------------------------------------------------
    def claim(self, limit: int = 50) -> list[int]:
        now = utcnow()
        with self.state.session_factory() as session:
            candidates = (
                session.execute(
                    select(GradeOutbox.id)
                    .where(
                        GradeOutbox.available_at <= now,
                        or_(GradeOutbox.locked_until.is_(None), GradeOutbox.locked_until < now),
                    )
                    .order_by(GradeOutbox.available_at, GradeOutbox.id)
                    .limit(limit)
                )
                .scalars()
                .all()
            )
            claimed = []
            for outbox_id in candidates:
                result = cast(
                    "CursorResult[Any]",
                    session.execute(
                        update(GradeOutbox)
                        .where(
                            GradeOutbox.id == outbox_id,
                            or_(GradeOutbox.locked_until.is_(None), GradeOutbox.locked_until < now),
                        )
                        .values(
                            locked_by=self.worker_id,
                            locked_until=now + timedelta(seconds=CLAIM_SECONDS),
                        )
                    ),
                )
                session.commit()
                if result.rowcount == 1:
                    claimed.append(outbox_id)
            return claimed

    # -- sending --------------------------------------------------------------------------------
    def run_once(self, limit: int = 50) -> dict[str, int]:
        """Send what is due now; return counts of sent, retrying, failed and deferred entries."""
        counts = {"sent": 0, "retrying": 0, "failed": 0, "deferred": 0}
        clients: dict[int, PlatformClient] = {}
        for outbox_id in self.claim(limit):
            with self.state.session_factory() as session:
                outcome = self._send(session, outbox_id, clients)
            counts[outcome] += 1
            count_grade_send(outcome)
        return counts

    def _send(self, session: Session, outbox_id: int, clients: dict[int, PlatformClient]) -> str:
        entry = session.get(GradeOutbox, outbox_id)
        if entry is None or entry.locked_by != self.worker_id:
            return "deferred"
        grade = session.get(Grade, entry.grade_id)
        course = session.get(Course, grade.course_id) if grade is not None else None
        if grade is None or course is None:  # deleted with its course meanwhile
            return "deferred"
        user = session.execute(
            select(User).where(User.org_id == course.org_id, User.username == grade.student_id)
        ).scalar_one_or_none()
        registration = session.execute(
            select(LtiRegistration).where(LtiRegistration.org_id == course.org_id)
        ).scalar_one_or_none()
        if registration is None or user is None or not user.lti_sub:
            return self._fail(
                session,
                entry,
                grade,
                "the course or student is no longer linked to an LMS (registration removed?)",
            )
        target = grade_target(session, course, grade.assignment_name)
        problem = target.problem()
        if problem is not None:
            return self._not_sendable(session, entry, grade, problem)
        client = clients.get(registration.id) or clients.setdefault(
            registration.id, PlatformClient(registration, self.state.tool_keys, self.store)
        )
        version = grade.version
        try:
            lineitems = list(target.lineitem_urls)  # coupled grading: the links' own columns
            if not lineitems:
                found = self._lineitem(session, client, course, target, grade)
                if found is None:
                    return self._retry(
                        session,
                        entry,
                        grade,
                        "another worker is creating the line item",
                        count=False,
                    )
                if found == NO_LINEITEM:
                    return self._not_sendable(session, entry, grade, target.cannot_create())
                lineitems = [found]
            stamp = score_timestamp(grade.last_score_timestamp)
            for lineitem in lineitems:
                client.post_score(
                    lineitem,
                    {
                        "userId": user.lti_sub,
                        "scoreGiven": grade.score,
                        "scoreMaximum": grade.max_score,
                        "activityProgress": "Completed",
                        "gradingProgress": "FullyGraded",
                        "timestamp": stamp.isoformat(timespec="milliseconds"),
                    },
                )
        except PlatformError as exc:
            if exc.retryable:
                return self._retry(session, entry, grade, str(exc), status=exc.status)
            return self._fail(
                session, entry, grade, f"the LMS refused the score: {exc}", status=exc.status
            )
        session.refresh(grade)
        grade.last_score_timestamp = stamp
        if grade.version == version:
            grade.status, grade.reason, grade.sent_at = SENT, None, utcnow()
        # Delete our claim only: a push during the send re-armed (unlocked) the entry.
        session.execute(
            delete(GradeOutbox).where(
                GradeOutbox.id == entry.id, GradeOutbox.locked_by == self.worker_id
            )
        )
        session.commit()
        return "sent"

    def _lineitem(
        self,
        session: Session,
        client: PlatformClient,
        course: Course,
        target: GradeTarget,
        grade: Grade,
    ) -> str | None:
        """The assignment's own line item (no coupled column): remembered, else looked up by
        ``resourceLinkId`` / ``resourceId`` + ``tag``, else created once (a lock serialises
        creation). None: another worker holds the lock; ``NO_LINEITEM``: none exists and the
        platform does not let the tool create one."""
        assert target.lineitems_url is not None  # GradeTarget.problem() checked it
        row = session.execute(
            select(LineItem).where(
                LineItem.course_id == course.id, LineItem.assignment_name == grade.assignment_name
            )
        ).scalar_one_or_none()
        if row is not None:
            return row.url
        lock = f"lineitem-lock-{course.id}-{grade.assignment_name}"
        if not self.store.add(lock, self.worker_id, LINEITEM_LOCK_SECONDS):
            return None
        try:
            url = client.find_lineitem(
                target.lineitems_url,
                resource_id=grade.assignment_name,
                resource_link_id=target.resource_link_id,
                scope=target.lookup_scope(),
            )
            if url is None and not target.can_create:
                return NO_LINEITEM
            if url is None:
                url = self._create_lineitem(client, target, grade)
            try:
                with session.begin_nested():
                    session.add(
                        LineItem(
                            course_id=course.id,
                            assignment_name=grade.assignment_name,
                            url=url,
                            score_maximum=grade.max_score,
                        )
                    )
            except IntegrityError:
                pass
            session.commit()
            return url
        finally:
            self.store.delete(lock)

    @staticmethod
    def _create_lineitem(client: PlatformClient, target: GradeTarget, grade: Grade) -> str:
        """Create the column, tied to the assignment's link; if the LMS no longer knows that
        link (deleted: 404/400), create it for the course without ``resourceLinkId``."""
        assert target.lineitems_url is not None
        create = functools.partial(
            client.create_lineitem,
            target.lineitems_url,
            resource_id=grade.assignment_name,
            label=grade.assignment_name,
            score_maximum=grade.max_score,
        )
        try:
            return create(resource_link_id=target.resource_link_id)
        except PlatformError as exc:
            if target.resource_link_id is None or exc.status not in (400, 404):
                raise
            log.warning(
                "the LMS refused a line item for resource link %r (%s); creating it without",
                target.resource_link_id,
                exc,
            )
            return create(resource_link_id=None)

    def _not_sendable(self, session: Session, entry: GradeOutbox, grade: Grade, reason: str) -> str:
        """The LMS setup does not allow this grade: ``not_sendable`` with what to change."""
        grade.status, grade.reason = NOT_SENDABLE, reason[:2000]
        session.execute(
            delete(GradeOutbox).where(
                GradeOutbox.id == entry.id, GradeOutbox.locked_by == self.worker_id
            )
        )
        session.commit()
        log.warning("grade %d (outbox %d) not sendable: %s", grade.id, entry.id, reason)
        return "failed"

    def _retry(
        self,
        session: Session,
        entry: GradeOutbox,
        grade: Grade,
        error: str,
        *,
        count: bool = True,
        status: int | None = None,
    ) -> str:
        """Put the entry back for later (``count``: an attempt that failed, with back-off)."""
        if count:
            entry.attempts += 1
        delay = backoff(entry.attempts) if count else 1.0
        entry.available_at = utcnow() + timedelta(seconds=delay)
        entry.locked_by = entry.locked_until = None
        entry.last_error = error[:2000]
        if grade.status == PENDING:
            grade.reason = f"waiting to retry ({entry.attempts} attempt(s)): {error}"[:2000]
        session.commit()
        if count:
            log.warning(
                "grade %d (outbox %d): attempt %d failed (LMS status %s): %s; retrying in %.0f s",
                grade.id,
                entry.id,
                entry.attempts,
                status if status is not None else "none",
                error,
                delay,
            )
            return "retrying"
        log.info("grade %d (outbox %d): deferred %.0f s: %s", grade.id, entry.id, delay, error)
        return "deferred"

    def _fail(
        self,
        session: Session,
        entry: GradeOutbox,
        grade: Grade,
        error: str,
        *,
        status: int | None = None,
    ) -> str:
        """Give up on the entry: the grade is marked failed with ``error`` as its reason."""
        outbox_id = entry.id
        grade.status, grade.reason = FAILED, error[:2000]
        session.execute(
            delete(GradeOutbox).where(
                GradeOutbox.id == entry.id, GradeOutbox.locked_by == self.worker_id
            )
        )
        session.commit()
        log.warning(
            "grade %d (outbox %d) failed (LMS status %s): %s",
            grade.id,
            outbox_id,
            status if status is not None else "none",
            error,
        )
        return "failed"

    def run_forever(self, interval: float = 2.0, stop: threading.Event | None = None) -> None:
        """Grade passes every ``interval`` seconds, each after the jobs that are due."""
        stop = stop or threading.Event()
        log.info("grade worker %s started", self.worker_id)
        while not stop.is_set():
            self.jobs.run_due()  # logs and survives a failing job
            try:
                counts = self.run_once()
                if any(counts.values()):
                    log.info("grade worker: %s", counts)
            except Exception:  # noqa: BLE001 - keep the worker alive; the outbox keeps the work
                log.exception("grade worker pass failed")
            stop.wait(interval)


def summarise(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())
