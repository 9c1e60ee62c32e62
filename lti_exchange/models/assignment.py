"""Assignments and their released versions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from lti_exchange.db import Base
from lti_exchange.models.types import Identifier, UtcDateTime, utcnow


class Assignment(Base):
    __tablename__ = "assignment"
    __table_args__ = (UniqueConstraint("course_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Identifier(100))
    released: Mapped[bool] = mapped_column(Boolean, default=False)
    # The released version; no foreign key, to keep assignment <-> release free of a cycle.
    current_release_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Release(Base):
    """One immutable released version of an assignment's files."""

    __tablename__ = "release"
    __table_args__ = (UniqueConstraint("assignment_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    blob_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    notebooks: Mapped[list[str]] = mapped_column(JSON)
    # The assignment's total points in nbgrader's gradebook when released (the plugin sends
    # them); None when unknown. The deep-linking chooser pre-fills its maximum score with it.
    max_score: Mapped[float | None] = mapped_column(Float, default=None)
    released_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
