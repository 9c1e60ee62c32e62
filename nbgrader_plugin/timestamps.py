"""The exchange's timestamps as nbgrader reads them (naive datetimes in UTC)."""

from __future__ import annotations

from datetime import datetime

from nbgrader.utils import parse_utc

_UTC_SUFFIX = " UTC"


def utc_time(text: str) -> datetime:
    """``text`` as nbgrader's ``parse_utc`` reads it. The exchange's own format
    (``2026-11-25 20:51:10.248006 UTC``) is read without dateutil (0.7 µs against 66 µs; a
    collect reads one per submission listed); anything else goes to ``parse_utc``."""
    if text.endswith(_UTC_SUFFIX):
        try:
            moment = datetime.fromisoformat(text[: -len(_UTC_SUFFIX)])
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                return moment
    return parse_utc(text)
