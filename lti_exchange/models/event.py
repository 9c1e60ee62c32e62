"""The audit record: who released, fetched, submitted, collected and fed back, and when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from lti_exchange.db import Base
from lti_exchange.models.types import UtcDateTime, utcnow

EVENT_KINDS = (
    "released",
    "unreleased",
    "fetched",
    "submitted",
    "submission_removed",
    "collected",
    "feedback_released",
    "feedback_fetched",
    "course_renamed",  # details {"from", "to", "by"}: services.course_mapping
)


class Event(Base):
    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_course_assignment_user", "course_id", "assignment_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"))
    assignment_id: Mapped[int | None] = mapped_column(
        ForeignKey("assignment.id", ondelete="CASCADE"), default=None
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    subject_id: Mapped[int | None] = mapped_column(Integer, default=None)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
