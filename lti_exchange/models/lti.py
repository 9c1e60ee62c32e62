"""LMS registrations (one organisation each), their deployments, a shared key-value store for
LTI state and nonces, and refresh tokens (stored hashed)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lti_exchange.db import Base
from lti_exchange.models.types import Identifier, UtcDateTime, utcnow


class LtiRegistration(Base):
    """One LMS registration (issuer + client_id) = one organisation."""

    __tablename__ = "lti_registration"
    __table_args__ = (UniqueConstraint("issuer", "client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), unique=True
    )
    issuer: Mapped[str] = mapped_column(Identifier(255))
    client_id: Mapped[str] = mapped_column(Identifier(255))
    auth_login_url: Mapped[str] = mapped_column(String(1000))
    auth_token_url: Mapped[str] = mapped_column(String(1000))
    auth_audience: Mapped[str | None] = mapped_column(String(1000), default=None)
    key_set_url: Mapped[str] = mapped_column(String(1000))
    notebook_url_template: Mapped[str | None] = mapped_column(String(1000), default=None)
    username_claim: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    deployments: Mapped[list[LtiDeployment]] = relationship(
        back_populates="registration", cascade="all, delete-orphan", lazy="selectin"
    )


class LtiDeployment(Base):
    __tablename__ = "lti_deployment"
    __table_args__ = (UniqueConstraint("registration_id", "deployment_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    registration_id: Mapped[int] = mapped_column(
        ForeignKey("lti_registration.id", ondelete="CASCADE")
    )
    deployment_id: Mapped[str] = mapped_column(Identifier(255))

    registration: Mapped[LtiRegistration] = relationship(back_populates="deployments")


class KeyValue(Base):
    """A small shared store with expiry: LTI state, nonces, launch data, JWKS caches.

    Shared by every worker and replica; inserting an existing key fails, which makes
    "use once" checks atomic.
    """

    __tablename__ = "kv_store"

    key: Mapped[str] = mapped_column(Identifier(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class RefreshToken(Base):
    """An opaque refresh token for one enrolment; only its SHA-256 is stored."""

    __tablename__ = "refresh_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    enrolment_id: Mapped[int] = mapped_column(
        ForeignKey("enrolment.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
