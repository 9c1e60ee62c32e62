"""Grades pushed by instructors, their delivery state, and the outbox the worker sends from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lti_exchange.db import Base
from lti_exchange.models.types import Identifier, UtcDateTime, utcnow

PENDING, SENT, FAILED, NOT_SENDABLE = "pending", "sent", "failed", "not_sendable"
GRADE_STATUSES = (PENDING, SENT, FAILED, NOT_SENDABLE)


class Grade(Base):
    """The latest score of one student for one assignment, and whether the LMS has it."""

    __tablename__ = "grade"
    __table_args__ = (UniqueConstraint("course_id", "assignment_name", "student_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"))
    assignment_name: Mapped[str] = mapped_column(Identifier(100))
    student_id: Mapped[str] = mapped_column(Identifier(100))
    score: Mapped[float] = mapped_column(Float)
    max_score: Mapped[float] = mapped_column(Float)
    submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    # Bumped on every change of score, so a send of an older version never marks a newer sent.
    version: Mapped[int] = mapped_column(Integer, default=1)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    pushed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # The score timestamp last accepted by the LMS (they must strictly increase).
    last_score_timestamp: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)


class GradeOutbox(Base):
    """One grade waiting to be sent. Written in the same transaction as the grade."""

    __tablename__ = "grade_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    grade_id: Mapped[int] = mapped_column(ForeignKey("grade.id", ondelete="CASCADE"), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    available_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_by: Mapped[str | None] = mapped_column(String(64), default=None)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class LineItem(Base):
    """The LMS line item (gradebook column) of one assignment; created once."""

    __tablename__ = "line_item"
    __table_args__ = (UniqueConstraint("course_id", "assignment_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"))
    assignment_name: Mapped[str] = mapped_column(Identifier(100))
    url: Mapped[str] = mapped_column(String(1000))
    score_maximum: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
