"""Courses (unique per organisation by code) and enrolments (a user's role in a course)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lti_exchange.db import Base
from lti_exchange.models.types import Identifier, UtcDateTime, utcnow
from lti_exchange.models.user import User

INSTRUCTOR = "Instructor"
TEACHING_ASSISTANT = "TeachingAssistant"
LEARNER = "Learner"
COURSE_ROLES = (INSTRUCTOR, TEACHING_ASSISTANT, LEARNER)
STAFF_ROLES = (INSTRUCTOR, TEACHING_ASSISTANT)


class Course(Base):
    __tablename__ = "course"
    __table_args__ = (
        UniqueConstraint("org_id", "code"),
        UniqueConstraint("org_id", "lti_context_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(Identifier(100))
    title: Mapped[str | None] = mapped_column(String(255), default=None)
    # Filled by LTI launches: the LMS context and the service endpoints for grade/roster sync.
    lti_context_id: Mapped[str | None] = mapped_column(Identifier(255), default=None)
    lti_deployment_id: Mapped[str | None] = mapped_column(String(255), default=None)
    ags_lineitems_url: Mapped[str | None] = mapped_column(String(1000), default=None)
    ags_scopes: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    nrps_memberships_url: Mapped[str | None] = mapped_column(String(1000), default=None)
    roster_synced_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Enrolment(Base):
    __tablename__ = "enrolment"
    __table_args__ = (UniqueConstraint("user_id", "course_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    tokens_not_before: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)
    course: Mapped[Course] = relationship(lazy="joined", innerjoin=True)
