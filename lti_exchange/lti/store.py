"""A key-value store with expiry in the database, shared by every worker and replica.

pylti1p3 keeps OIDC state, nonces and launch data through an object with ``get``/``set``; ours
also has ``add`` (insert only if absent), which makes single-use checks atomic.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from lti_exchange.models import KeyValue
from lti_exchange.models.types import utcnow

DEFAULT_TIMEOUT = 7200
MAX_KEY = 255


def _key(key: str) -> str:
    if len(key) > MAX_KEY:
        import hashlib

        return "h:" + hashlib.sha256(key.encode()).hexdigest()
    return key


class DatabaseStore:
    """``get``/``set``/``delete``/``add`` on the ``kv_store`` table, each in its own transaction."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self._sessions = session_factory

    def get(self, key: str) -> Any:
        with self._sessions() as session:
            row = session.get(KeyValue, _key(key))
            if row is None or row.expires_at <= utcnow():
                return None
            return json.loads(row.value)

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        expires = utcnow() + timedelta(seconds=timeout or DEFAULT_TIMEOUT)
        data = json.dumps(value)
        with self._sessions() as session:
            row = session.get(KeyValue, _key(key))
            if row is None:
                session.add(KeyValue(key=_key(key), value=data, expires_at=expires))
            else:
                row.value, row.expires_at = data, expires
            try:
                session.commit()
            except IntegrityError:  # a concurrent set of the same key: last writer wins
                session.rollback()
                session.merge(KeyValue(key=_key(key), value=data, expires_at=expires))
                session.commit()
        return True

    def add(self, key: str, value: Any, timeout: int | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent (or expired); True when this call stored it."""
        expires = utcnow() + timedelta(seconds=timeout or DEFAULT_TIMEOUT)
        # Insert first: a DELETE of an absent key takes a gap lock on InnoDB, and concurrent
        # adds of neighbouring keys then deadlock. Only a taken key is checked for expiry.
        for _attempt in range(2):
            with self._sessions() as session:
                session.add(KeyValue(key=_key(key), value=json.dumps(value), expires_at=expires))
                try:
                    session.commit()
                    return True
                except IntegrityError:
                    session.rollback()
                stale = session.execute(
                    delete(KeyValue).where(
                        KeyValue.key == _key(key), KeyValue.expires_at <= utcnow()
                    )
                )
                session.commit()
                if not stale.rowcount:  # type: ignore[attr-defined]  # DML gives a CursorResult
                    return False  # taken and live
        return False

    def delete(self, key: str) -> bool:
        with self._sessions() as session:
            result = session.execute(delete(KeyValue).where(KeyValue.key == _key(key)))
            session.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]  # DML gives a CursorResult

    def pop(self, key: str) -> Any:
        """Return the value and delete it, atomically: a second ``pop`` gets None."""
        with self._sessions() as session:
            row = session.execute(
                select(KeyValue).where(KeyValue.key == _key(key)).with_for_update()
            ).scalar_one_or_none()
            if row is None:
                return None
            value, expired = row.value, row.expires_at <= utcnow()
            result = session.execute(delete(KeyValue).where(KeyValue.key == _key(key)))
            session.commit()
            if result.rowcount != 1 or expired:  # type: ignore[attr-defined]  # DML gives a CursorResult
                return None
            return json.loads(value)
