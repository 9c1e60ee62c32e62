"""Column types shared by the models."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, String
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A UTC instant with microseconds on every backend; stored naive, returned aware (UTC)."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Identifier(TypeDecorator[str]):
    """A string compared case-sensitively on every backend: course, assignment, notebook and
    student ids, and LTI identifiers (issuer, client_id, deployment_id, sub, context id).

    MySQL/MariaDB collations are case-insensitive by default, which would make 'Bob' and 'bob'
    one user (and one unique key); a binary collation keeps them apart as nbgrader does.
    """

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(
                mysql.VARCHAR(self.impl.length, charset="utf8mb4", collation="utf8mb4_bin")
            )
        return dialect.type_descriptor(String(self.impl.length))


def utcnow() -> datetime:
    return datetime.now(UTC)
