"""What every service needs: the session, the blob store, limits and a clock."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from lti_exchange import direct_sql
from lti_exchange.archives.upload import ArchiveLimits
from lti_exchange.direct_sql import DirectStatement
from lti_exchange.models import Event
from lti_exchange.models.types import utcnow
from lti_exchange.services.authorisation import Caller
from lti_exchange.services.retry import is_unavailable
from lti_exchange.storage import BlobStorage

log = logging.getLogger(__name__)
T = TypeVar("T")
_INSERT_EVENT = insert(Event.__table__)  # type: ignore[arg-type]  # a Table: Core, not the ORM
_DIRECT_INSERT_EVENT = DirectStatement(_INSERT_EVENT)  # the hot paths' (``direct_sql``)


@dataclass
class ServiceContext:
    session: Session
    storage: BlobStorage
    limits: ArchiveLimits
    clock: Callable[[], datetime] = utcnow

    def record(
        self,
        caller: Caller,
        kind: str,
        *,
        assignment_id: int | None = None,
        subject_id: int | None = None,
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> Event:
        """Add an audit event for ``caller`` in their course (committed with the unit of work)."""
        event = Event(**self._event_row(caller, kind, assignment_id, subject_id, details, at))
        self.session.add(event)
        return event

    def record_now(
        self,
        caller: Caller,
        kind: str,
        *,
        assignment_id: int,
        subject_id: int,
        at: datetime,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Insert an audit event at once, in the session's transaction, without the ORM's unit
        of work or ``Connection.execute`` (the hot paths: fetch and submit; ``direct_sql``).
        Rows it refers to must already be in the database."""
        row = self._event_row(caller, kind, assignment_id, subject_id, details, at)
        direct_sql.insert(self.session, _DIRECT_INSERT_EVENT, row)

    def record_many(
        self,
        caller: Caller,
        kind: str,
        *,
        assignment_id: int,
        subject_ids: Sequence[int],
        at: datetime,
    ) -> None:
        """``record_now`` for many subjects: one multi-row insert, in the session's transaction."""
        rows = [self._event_row(caller, kind, assignment_id, sid, None, at) for sid in subject_ids]
        if rows:
            self.session.connection().execute(_INSERT_EVENT, rows)

    def record_after_download(self, what: str, unit: Callable[[], object]) -> None:
        """Run ``unit`` (rows that record a download which has gone out) and commit. A failure
        is logged, not raised: the bytes were delivered, only their record is missing."""
        try:
            unit()
            self.session.commit()
        except Exception:  # noqa: BLE001 - see above
            self.session.rollback()
            log.exception("%s went out but could not be recorded", what)

    def _event_row(
        self,
        caller: Caller,
        kind: str,
        assignment_id: int | None,
        subject_id: int | None,
        details: dict[str, Any] | None,
        at: datetime | None,
    ) -> dict[str, Any]:
        """The event's column values; no ``details`` key without details (SQL NULL, whether
        the ORM or a Core insert writes it, never a JSON ``null``)."""
        row: dict[str, Any] = {
            "kind": kind,
            "course_id": caller.course_id,
            "assignment_id": assignment_id,
            "user_id": caller.user_id,
            "subject_id": subject_id,
            "created_at": at or self.clock(),
        }
        if details is not None:
            row["details"] = details
        return row

    def delete_blobs_quietly(self, keys: list[str]) -> None:
        for key in keys:
            with contextlib.suppress(OSError):
                self.storage.delete(key)

    def commit_or_delete_blobs(self, keys: list[str], unit: Callable[[], T]) -> T:
        """Run ``unit``, which commits the rows that point at the stored blobs ``keys``; if it
        fails, roll back and delete those blobs, so no blob is left without its row.

        ``keys`` is read only on failure: a unit that stores blobs as it goes appends to it.
        """
        try:
            return unit()
        except BaseException as exc:
            self.discard_after_failure(keys, exc)
            raise

    def discard_after_failure(self, keys: list[str], exc: BaseException) -> None:
        """Roll back a unit that failed with ``exc`` and delete the blobs ``keys`` it stored,
        unless the database dropped the connection: the commit may then have happened (a
        failover at that instant), so a row may name them. The orphan sweep deletes them later
        if no row does (``jobs/orphans.py``)."""
        self.session.rollback()
        if not (isinstance(exc, OperationalError) and is_unavailable(exc)):
            self.delete_blobs_quietly(keys)
