"""What every service needs: the session, the blob store, limits and a clock."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from lti_exchange.archives import ArchiveLimits
from lti_exchange.auth import Caller
from lti_exchange.models import Event
from lti_exchange.models.types import utcnow
from lti_exchange.storage import BlobStorage


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
        event = Event(
            kind=kind,
            course_id=caller.course.id,
            assignment_id=assignment_id,
            user_id=caller.user.id,
            subject_id=subject_id,
            details=details,
            created_at=at or self.clock(),
        )
        self.session.add(event)
        return event

    def delete_blobs_quietly(self, keys: list[str]) -> None:
        for key in keys:
            with contextlib.suppress(OSError):
                self.storage.delete(key)
