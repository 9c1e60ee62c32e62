"""Which blobs the database points to, and how that compares with what the storage holds.

Used by the worker's orphan sweep (``jobs/orphans.py``) and ``lti-exchange storage check``.
Three tables hold blob keys: ``release``, ``submission`` and ``feedback`` (``blob_key``).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from lti_exchange.models import Feedback, Release, Submission
from lti_exchange.storage import BlobStorage, is_blob_key

BLOB_TABLES: tuple[Any, ...] = (Release, Submission, Feedback)
QUERY_BATCH = 500  # keys per IN (...) query


def referenced_keys(session: Session, keys: Collection[str]) -> set[str]:
    """Those of ``keys`` that some row points to (one query per table and batch of keys)."""
    keys = list(keys)
    found: set[str] = set()
    for start in range(0, len(keys), QUERY_BATCH):
        batch = keys[start : start + QUERY_BATCH]
        for model in BLOB_TABLES:
            found.update(session.scalars(select(model.blob_key).where(model.blob_key.in_(batch))))
    return found


def iter_references(session: Session) -> Iterator[tuple[str, int, str]]:
    """Every ``(table, row id, blob key)`` the database holds, streamed."""
    for model in BLOB_TABLES:
        rows = session.execute(select(model.id, model.blob_key).execution_options(yield_per=1000))
        for row_id, key in rows:
            yield model.__tablename__, row_id, key


@dataclass
class InventoryReport:
    """``storage check``: rows whose blob is missing, blobs no row points to."""

    blobs: int = 0
    rows: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.orphans

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "blobs": self.blobs,
            "rows": self.rows,
            "missing": self.missing,
            "orphans": self.orphans,
        }


def check_inventory(session: Session, storage: BlobStorage) -> InventoryReport:
    """Compare the rows' keys with the stored blobs (the rows' keys are held in memory once;
    the storage listing is streamed)."""
    report = InventoryReport()
    wanted: dict[str, tuple[str, int]] = {}
    for table, row_id, key in iter_references(session):
        report.rows += 1
        wanted.setdefault(key, (table, row_id))
    now = time.time()
    seen: set[str] = set()
    for info in storage.iter_blobs():
        if not is_blob_key(info.key):
            continue
        report.blobs += 1
        if info.key in wanted:
            seen.add(info.key)
        else:
            report.orphans.append(
                {"key": info.key, "size": info.size, "age_seconds": int(now - info.modified)}
            )
    for key, (table, row_id) in wanted.items():
        if key not in seen:
            report.missing.append({"table": table, "id": row_id, "key": key})
    return report
