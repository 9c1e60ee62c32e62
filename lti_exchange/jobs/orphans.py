"""Blobs no row points to: a process died between storing a blob and committing its row.

The blob store is written first and the row committed after (``services/context.py``), so such
a blob is harmless but takes space. Once a blob is older than the grace period
(``LTI_EXCHANGE_PARTIAL_UPLOAD_GRACE``: no upload takes that long between its blob and its row)
and no ``release``/``submission``/``feedback`` row names it, it is deleted. The listing is
streamed and checked against the database in batches, so memory stays bounded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from lti_exchange.app_objects import AppObjects
from lti_exchange.services.blob_inventory import QUERY_BATCH, referenced_keys
from lti_exchange.storage import is_blob_key

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 3600.0


def _old_keys(state: AppObjects, cutoff: float) -> Iterator[list[str]]:
    batch: list[str] = []
    for info in state.storage.iter_blobs():
        if info.modified <= cutoff and is_blob_key(info.key):
            batch.append(info.key)
            if len(batch) >= QUERY_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def sweep_orphan_blobs(state: AppObjects, older_than: float | None = None) -> int:
    """Delete blobs older than the grace period (or ``older_than`` s) that no row names."""
    grace = state.settings.partial_upload_grace if older_than is None else older_than
    cutoff = time.time() - grace
    removed = 0
    for batch in _old_keys(state, cutoff):
        with state.session_factory() as session:
            kept = referenced_keys(session, batch)
        for key in batch:
            if key not in kept:
                state.storage.delete(key)
                log.info("deleted orphan blob %s (no row names it)", key)
                removed += 1
    if removed:
        log.info("removed %d orphan blob(s) older than %g s", removed, grace)
    return removed
