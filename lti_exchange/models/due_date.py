"""Due dates of a course's assignments and per-student extensions.

A due date names its assignment by nbgrader id (like grades), so the LMS can state one before the
assignment is released. ``source`` says who set it, in order of precedence: an instructor on the
dashboard (``instructor``), the LMS through a launch's ``due_at`` custom parameter (``lms``), or
the ``endDateTime`` of the LMS line item of a link bound to the assignment, read by the worker
(``lineitem``). A source never overwrites a date of a source before it
(``services/due_dates.py``). An extension is the student's own due date (absolute); collect
writes it into the nbgrader gradebook as the difference to the assignment's due date.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lti_exchange.db import Base
from lti_exchange.models.types import Identifier, UtcDateTime, utcnow

SOURCE_LMS, SOURCE_INSTRUCTOR, SOURCE_LINEITEM = "lms", "instructor", "lineitem"


class DueDate(Base):
    __tablename__ = "due_date"
    __table_args__ = (UniqueConstraint("course_id", "assignment_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"))
    assignment_name: Mapped[str] = mapped_column(Identifier(100))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(String(16))
    set_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Extension(Base):
    """One student's own due date for one assignment (replaces the assignment's)."""

    __tablename__ = "due_date_extension"
    __table_args__ = (UniqueConstraint("course_id", "assignment_name", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"))
    assignment_name: Mapped[str] = mapped_column(Identifier(100))
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    set_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
