"""Server time in nbgrader's timestamp format (UTC, microseconds)."""

from __future__ import annotations

from datetime import UTC, datetime

from lti_exchange.errors import InvalidRequest

NBGRADER_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"


def format_timestamp(moment: datetime) -> str:
    """``2026-11-25 20:51:10.248006 UTC``: the exact string nbgrader writes to timestamp.txt."""
    return moment.astimezone(UTC).strftime(NBGRADER_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """Parse what ``format_timestamp`` wrote (also ISO 8601); raise ``InvalidRequest`` otherwise."""
    value = text.strip()
    for candidate in (value, value.replace(" UTC", "+00:00"), value.replace("Z", "+00:00")):
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    raise InvalidRequest(
        f"Invalid timestamp {value[:40]!r}; expected e.g. '2026-11-25 20:51:10.248006 UTC'."
    )
