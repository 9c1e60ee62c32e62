"""Work requests a web process leaves for the worker: key-value rows named ``<prefix><row id>``
(``roster``'s course syncs, ``lineitem_due_dates``' line-item reads)."""

from __future__ import annotations

from sqlalchemy import select

from lti_exchange.app_objects import AppObjects
from lti_exchange.models import KeyValue
from lti_exchange.models.types import utcnow


def pending_ids(state: AppObjects, prefix: str, limit: int) -> list[int]:
    """The row ids of unexpired requests named ``prefix…``, oldest request first."""
    with state.session_factory() as session:
        keys = session.execute(
            select(KeyValue.key)
            .where(KeyValue.key.like(f"{prefix}%"), KeyValue.expires_at > utcnow())
            .order_by(KeyValue.expires_at)
            .limit(limit)
        ).scalars()
        return [int(key[len(prefix) :]) for key in keys]
