"""Which blobs the database points to, and how that compares with what the storage holds.

Used by the worker's orphan sweep (``jobs/orphans.py``) and ``lti-exchange storage check``.
Three tables hold blob keys: ``release``, ``submission`` and ``feedback`` (``blob_key``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from lti_exchange.archives.stream import opened
from lti_exchange.models import Feedback, Release, Submission
from lti_exchange.storage import BlobCorrupted, BlobNotFound, BlobStorage, is_blob_key

BLOB_TABLES: tuple[Any, ...] = (Release, Submission, Feedback)
QUERY_BATCH = 500  # keys per IN (...) query
VERIFY_CHUNK = 4 * 1024 * 1024


def referenced_keys(session: Session, keys: Collection[str]) -> set[str]:
    """Those of ``keys`` that some row points to (one query per table and batch of keys)."""
    keys = list(keys)
    found: set[str] = set()
    for start in range(0, len(keys), QUERY_BATCH):
        batch = keys[start : start + QUERY_BATCH]
        for model in BLOB_TABLES:
            found.update(session.scalars(select(model.blob_key).where(model.blob_key.in_(batch))))
    return found


@dataclass(frozen=True)
class Reference:
    """A row that points to a blob, with the size and SHA-256 it recorded for it."""

    table: str
    id: int
    key: str
    size: int
    sha256: str

    def finding(self, **more: Any) -> dict[str, Any]:
        return {"table": self.table, "id": self.id, "key": self.key, **more}


def iter_references(session: Session) -> Iterator[Reference]:
    """Every row that points to a blob, streamed."""
    for model in BLOB_TABLES:
        columns = (model.id, model.blob_key, model.size, model.sha256)
        for row_id, key, size, sha256 in session.execute(
            select(*columns).execution_options(yield_per=1000)
        ):
            yield Reference(model.__tablename__, row_id, key, size, sha256)


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
    verified: bool = False
    missing: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[dict[str, Any]] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)
    in_progress: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No real problem: in-progress blobs do not count."""
        return not self.missing and not self.damaged and not self.orphans

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "blobs": self.blobs,
            "rows": self.rows,
            "verified": self.verified,
            "missing": self.missing,
            "damaged": self.damaged,
            "orphans": self.orphans,
            "in_progress": self.in_progress,
            "grace_seconds": self.grace,
        }


def check_inventory(
    session: Session,
    storage: BlobStorage,
    grace: float,
    *,
    verify: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> InventoryReport:
    """Compare the rows' keys with the stored blobs (the rows' keys are held in memory once;
    the storage listing is streamed). Blobs with no row count as orphans once older than
    ``grace`` seconds, before that as in progress. A blob whose size differs from its row's
    is damaged; with ``verify`` every referenced blob is also read and hashed against its
    row's SHA-256 (``progress(bytes_read, bytes_in_all)`` hears how far that is)."""
    report = InventoryReport(grace=grace, verified=verify)
    wanted: dict[str, Reference] = {}
    for reference in iter_references(session):
        report.rows += 1
        wanted.setdefault(reference.key, reference)
    now = time.time()
    seen: set[str] = set()
    for info in storage.iter_blobs():
        if not is_blob_key(info.key):
            continue
        report.blobs += 1
        row = wanted.get(info.key)
        if row is not None:
            seen.add(info.key)
            if info.size != row.size:
                reason = f"{info.size} bytes stored, {row.size} recorded"
                report.damaged.append(row.finding(reason=reason))
            continue
        age = int(now - info.modified)
        entry = {"key": info.key, "size": info.size, "age_seconds": age}
        (report.orphans if age > grace else report.in_progress).append(entry)
    gone = [key for key in wanted if key not in seen]
    for key in _still_missing(session, storage, gone):
        report.missing.append(wanted[key].finding())
    if verify:
        damaged = {finding["key"] for finding in report.damaged}
        to_read = [wanted[key] for key in seen if key not in damaged]
        report.damaged += _verify_contents(storage, to_read, progress)
    return report


def _verify_contents(
    storage: BlobStorage,
    references: list[Reference],
    progress: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    """Read each blob once and compare its SHA-256 with its row's; the damaged ones. Blobs are
    opened ahead where the store asks for it (S3: the next GetObjects wait while one is read)."""
    references = sorted(references, key=lambda r: r.key)
    total = sum(r.size for r in references)
    done = 0
    damaged = []
    handles = opened(storage, [r.key for r in references])
    try:
        for reference, handle in zip(references, handles, strict=True):
            # a blob deleted with its row since the listing (BlobNotFound) is no finding
            found = reference.sha256 if isinstance(handle, BlobNotFound) else _sha256_of(handle)
            done += reference.size
            if progress is not None:
                progress(done, total)
            if found != reference.sha256:
                reason = "its bytes differ from the recorded SHA-256"
                damaged.append(reference.finding(reason=reason))
    finally:
        handles.close()
    return damaged


def _sha256_of(handle: BinaryIO) -> str | None:
    """The SHA-256 of the rest of ``handle`` (closed after), or None where the store refused
    bytes that failed its own check."""
    digest = hashlib.sha256()
    try:
        with handle:
            while chunk := handle.read(VERIFY_CHUNK):
                digest.update(chunk)
    except BlobCorrupted:  # a store that checks as it reads (S3) refused the last bytes
        return None
    return digest.hexdigest()


def _still_missing(session: Session, storage: BlobStorage, keys: list[str]) -> list[str]:
    """Those of ``keys`` whose row still exists and whose blob is still absent, asked again
    after the listing (a row and its blob deleted meanwhile are no gap)."""
    if not keys:
        return []
    session.rollback()  # a fresh transaction: see rows deleted since the first read
    referenced = referenced_keys(session, keys)
    return [key for key in keys if key in referenced and not storage.exists(key)]
