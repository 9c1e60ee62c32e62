"""Users, unique per organisation by their nbgrader student id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from lti_exchange.db import Base
from lti_exchange.models.types import Identifier, UtcDateTime, utcnow


class User(Base):
    __tablename__ = "user_account"
    __table_args__ = (
        UniqueConstraint("org_id", "username"),
        UniqueConstraint("org_id", "lti_sub"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    username: Mapped[str] = mapped_column(Identifier(100))
    lms_user_id: Mapped[str | None] = mapped_column(String(255), default=None)
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    email: Mapped[str | None] = mapped_column(String(255), default=None)
    # The LTI ``sub`` (stable per platform); the user key is (organisation, sub).
    lti_sub: Mapped[str | None] = mapped_column(Identifier(255), default=None)
    # The LMS's "student view" user (``…/lti/system/person#TestUser``): never sent grades.
    test_user: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
