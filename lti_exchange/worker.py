"""The grade worker: sends outbox entries to the LMS (AGS), with retries and back-off.

Several workers may run at once: each entry is claimed with a conditional update, so no two
workers send it at the same time; a claim expires, so a killed worker loses nothing.

Every ``SWEEP_INTERVAL`` seconds the worker also deletes partial uploads that a killed server
process left in the blob storage (older than ``LTI_EXCHANGE_PARTIAL_UPLOAD_GRACE``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lti_exchange.lti.platform_client import PlatformClient, PlatformError
from lti_exchange.lti.store import DatabaseStore
from lti_exchange.models import Course, Grade, GradeOutbox, LineItem, LtiRegistration, User
from lti_exchange.models.grade import FAILED, PENDING, SENT
from lti_exchange.models.types import utcnow
from lti_exchange.state import ExchangeState

log = logging.getLogger(__name__)

CLAIM_SECONDS = 120
MAX_BACKOFF = 300
LINEITEM_LOCK_SECONDS = 60
SWEEP_INTERVAL = 300.0


def backoff(attempts: int) -> float:
    return float(min(2 ** max(attempts - 1, 0), MAX_BACKOFF))


def score_timestamp(last: datetime | None) -> datetime:
    """Now, to the millisecond, and strictly after the last score the LMS accepted."""
    now = utcnow().replace(microsecond=(utcnow().microsecond // 1000) * 1000)
    if last is not None and now <= last:
        now = last + timedelta(milliseconds=1)
    return now


def sweep_partial_uploads(state: ExchangeState, older_than: float | None = None) -> int:
    """Delete partial uploads untouched for the grace period (or ``older_than`` s); how many."""
    grace = state.settings.partial_upload_grace if older_than is None else older_than
    removed = state.storage.sweep_partial(grace)
    if removed:
        log.info("removed %d partial upload(s) untouched for over %g s", removed, grace)
    else:
        log.debug("no partial upload untouched for over %g s", grace)
    return removed


class PartialUploadSweeper:
    """Runs ``sweep_partial_uploads`` at most once every ``interval`` seconds."""

    def __init__(self, state: ExchangeState, interval: float = SWEEP_INTERVAL) -> None:
        self.state = state
        self.interval = interval
        self._next = 0.0

    def run_if_due(self) -> int | None:
        """Sweep when due (the first call always is); the count removed, or None when not due."""
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self.interval
        return sweep_partial_uploads(self.state)


class GradeWorker:
    def __init__(self, state: ExchangeState, worker_id: str | None = None) -> None:
        self.state = state
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.store = DatabaseStore(state.session_factory)
        self.sweeper = PartialUploadSweeper(state)

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
                result = session.execute(
                    update(GradeOutbox)
                    .where(
                        GradeOutbox.id == outbox_id,
                        or_(GradeOutbox.locked_until.is_(None), GradeOutbox.locked_until < now),
                    )
                    .values(
                        locked_by=self.worker_id,
                        locked_until=now + timedelta(seconds=CLAIM_SECONDS),
                    )
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
        return counts

    def _send(self, session: Session, outbox_id: int, clients: dict[int, PlatformClient]) -> str:
        entry = session.get(GradeOutbox, outbox_id)
        if entry is None or entry.locked_by != self.worker_id:
            return "deferred"
        grade = session.get(Grade, entry.grade_id)
        course = session.get(Course, grade.course_id)
        user = session.execute(
            select(User).where(User.org_id == course.org_id, User.username == grade.student_id)
        ).scalar_one_or_none()
        registration = session.execute(
            select(LtiRegistration).where(LtiRegistration.org_id == course.org_id)
        ).scalar_one_or_none()
        if registration is None or user is None or not user.lti_sub or not course.ags_lineitems_url:
            return self._fail(
                session,
                entry,
                grade,
                "the course or student is no longer linked to an LMS (registration removed?)",
            )
        client = clients.get(registration.id) or clients.setdefault(
            registration.id, PlatformClient(registration, self.state.tool_keys, self.store)
        )
        version = grade.version
        try:
            lineitem = self._lineitem(session, client, course, grade)
            if lineitem is None:
                return self._retry(
                    session, entry, grade, "another worker is creating the line item", count=False
                )
            stamp = score_timestamp(grade.last_score_timestamp)
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
                return self._retry(session, entry, grade, str(exc))
            return self._fail(session, entry, grade, f"the LMS refused the score: {exc}")
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
        self, session: Session, client: PlatformClient, course: Course, grade: Grade
    ) -> str | None:
        """The line item of the assignment, found or created once (a lock serialises creation)."""
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
            url = client.find_or_create_lineitem(
                course.ags_lineitems_url,
                grade.assignment_name,
                grade.assignment_name,
                grade.max_score,
            )
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

    def _retry(
        self, session: Session, entry: GradeOutbox, grade: Grade, error: str, *, count: bool = True
    ) -> str:
        if count:
            entry.attempts += 1
        delay = backoff(entry.attempts) if count else 1.0
        entry.available_at = utcnow() + timedelta(seconds=delay)
        entry.locked_by = entry.locked_until = None
        entry.last_error = error[:2000]
        if grade.status == PENDING:
            grade.reason = f"waiting to retry ({entry.attempts} attempt(s)): {error}"[:2000]
        session.commit()
        log.warning("grade %s: retry in %.0f s: %s", grade.id, delay, error)
        return "retrying" if count else "deferred"

    def _fail(self, session: Session, entry: GradeOutbox, grade: Grade, error: str) -> str:
        grade.status, grade.reason = FAILED, error[:2000]
        session.execute(
            delete(GradeOutbox).where(
                GradeOutbox.id == entry.id, GradeOutbox.locked_by == self.worker_id
            )
        )
        session.commit()
        log.warning("grade %s failed: %s", grade.id, error)
        return "failed"

    def run_forever(self, interval: float = 2.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        log.info("grade worker %s started", self.worker_id)
        while not stop.is_set():
            try:
                self.sweeper.run_if_due()
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next interval
                log.exception("partial upload sweep failed")
            try:
                counts = self.run_once()
                if any(counts.values()):
                    log.info("grade worker: %s", counts)
            except Exception:  # noqa: BLE001 - keep the worker alive; the outbox keeps the work
                log.exception("grade worker pass failed")
            stop.wait(interval)


def start_background_worker(state: ExchangeState, interval: float = 2.0) -> threading.Thread:
    """Run a worker in a daemon thread (the embedded default's ``serve``)."""
    thread = threading.Thread(
        target=GradeWorker(state).run_forever,
        kwargs={"interval": interval},
        daemon=True,
        name="grade-worker",
    )
    thread.start()
    return thread


def summarise(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())
