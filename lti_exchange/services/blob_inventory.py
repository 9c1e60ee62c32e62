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
    """``storage check``: rows whose blob is missing, blobs no row points to.

    Blobs without a row that are younger than the grace period are ``in_progress``, not
    ``orphans``: the blob store is written before the row is committed, so an upload being
    received (or committed right now) looks like that; the worker's sweep leaves them alone too.
    """

    grace: float
    blobs: int = 0
    rows: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)
    in_progress: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No real problem: in-progress blobs do not count."""
        return not self.missing and not self.orphans

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "blobs": self.blobs,
            "rows": self.rows,
            "missing": self.missing,
            "orphans": self.orphans,
            "in_progress": self.in_progress,
            "grace_seconds": self.grace,
        }


def check_inventory(session: Session, storage: BlobStorage, grace: float) -> InventoryReport:
    """Compare the rows' keys with the stored blobs (the rows' keys are held in memory once;
    the storage listing is streamed). Blobs with no row count as orphans once older than
    ``grace`` seconds, before that as in progress."""
    report = InventoryReport(grace=grace)
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
            continue
        age = int(now - info.modified)
        entry = {"key": info.key, "size": info.size, "age_seconds": age}
        (report.orphans if age > grace else report.in_progress).append(entry)
    gone = [key for key in wanted if key not in seen]
    for key in _still_missing(session, storage, gone):
        table, row_id = wanted[key]
        report.missing.append({"table": table, "id": row_id, "key": key})
    return report


def _still_missing(session: Session, storage: BlobStorage, keys: list[str]) -> list[str]:
    """Those of ``keys`` whose row still exists and whose blob is still absent, asked again
    after the listing (a row and its blob deleted meanwhile are no gap)."""
    if not keys:
        return []
    session.rollback()  # a fresh transaction: see rows deleted since the first read
    referenced = referenced_keys(session, keys)
    return [key for key in keys if key in referenced and not storage.exists(key)]
