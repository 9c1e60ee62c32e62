"""Submissions (immutable, server-timestamped) and the feedback that grades them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lti_exchange.db import Base
from lti_exchange.models.types import Identifier, UtcDateTime, utcnow
from lti_exchange.models.user import User


class Submission(Base):
    __tablename__ = "submission"
    __table_args__ = (
        Index("ix_submission_assignment_user", "assignment_id", "user_id"),
        # A retried upload names the submission its first attempt stored (NULLs never clash;
        # key first: on MariaDB an index led by user_id would replace its foreign key's).
        Index("uq_submission_user_idempotency_key", "idempotency_key", "user_id", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    timestamp: Mapped[datetime] = mapped_column(UtcDateTime)
    blob_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    notebooks: Mapped[list[str]] = mapped_column(JSON)
    removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    collected_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # The client's Idempotency-Key for this upload (unique per user), if it sent one.
    idempotency_key: Mapped[str | None] = mapped_column(String(64), default=None)

    user: Mapped[User] = relationship(lazy="raise")
    feedback: Mapped[list[Feedback]] = relationship(
        back_populates="submission", lazy="raise", order_by="Feedback.notebook_id"
    )


class Feedback(Base):
    """The feedback HTML of one notebook of one submission; replaced when released again."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("submission_id", "notebook_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id", ondelete="CASCADE"))
    notebook_id: Mapped[str] = mapped_column(Identifier(100))
    blob_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    released_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    submission: Mapped[Submission] = relationship(back_populates="feedback", lazy="raise")
