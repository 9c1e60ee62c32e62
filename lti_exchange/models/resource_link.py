"""LMS resource links (the places in a course that launch the tool) and the nbgrader assignment
each one stands for."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lti_exchange.db import Base
from lti_exchange.models.types import Identifier, UtcDateTime, utcnow

BOUND_BY_CUSTOM, BOUND_BY_INSTRUCTOR = "custom", "instructor"


class ResourceLink(Base):
    """One resource link of a course, as its latest launch described it.

    ``lineitem_url`` is the AGS claim's ``lineitem`` (the link's own gradebook column, coupled
    grading); ``ags_scopes`` the scopes that launch's AGS claim offered. ``assignment_name`` comes
    from the custom parameter ``nbgrader_assignment_id`` (``bound_by`` "custom") or from an
    instructor's choice on the landing page ("instructor").
    """

    __tablename__ = "resource_link"
    __table_args__ = (UniqueConstraint("course_id", "lti_resource_link_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("course.id", ondelete="CASCADE"))
    lti_resource_link_id: Mapped[str] = mapped_column(Identifier(255))
    title: Mapped[str | None] = mapped_column(String(255), default=None)
    lineitem_url: Mapped[str | None] = mapped_column(String(1000), default=None)
    ags_scopes: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    assignment_name: Mapped[str | None] = mapped_column(Identifier(100), default=None)
    bound_by: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
