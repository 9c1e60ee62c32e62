"""Partial uploads (``storage/tmp/*.part``) that a killed server process left behind."""

from __future__ import annotations

import logging

from lti_exchange.app_objects import AppObjects

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 300.0


def sweep_partial_uploads(state: AppObjects, older_than: float | None = None) -> int:
    """Delete partial uploads untouched for the grace period (or ``older_than`` s); how many."""
    grace = state.settings.partial_upload_grace if older_than is None else older_than
    removed = state.storage.sweep_partial(grace)
    if removed:
        log.info("removed %d partial upload(s) untouched for over %g s", removed, grace)
    else:
        log.debug("no partial upload untouched for over %g s", grace)
    return removed
