"""Server time in nbgrader's timestamp format (UTC, microseconds)."""

from __future__ import annotations

from datetime import UTC, datetime

from lti_exchange.errors import InvalidRequest

NBGRADER_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"
MIN_YEAR, MAX_YEAR = 1970, 9999


def format_timestamp(moment: datetime) -> str:
    """``2026-11-25 20:51:10.248006 UTC``: the exact string nbgrader writes to timestamp.txt."""
    return moment.astimezone(UTC).strftime(NBGRADER_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """Parse what ``format_timestamp`` wrote (also ISO 8601); raise ``InvalidRequest`` otherwise.

    Only years 1970–9999 (in UTC) are accepted: every database stores them, and an offset on a
    date at the edge of Python's range cannot overflow.
    """
    value = text.strip()
    for candidate in (value, value.replace(" UTC", "+00:00"), value.replace("Z", "+00:00")):
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            utc: datetime | None = moment.astimezone(UTC)
        except OverflowError:
            utc = None
        if utc is None or not MIN_YEAR <= utc.year <= MAX_YEAR:
            raise InvalidRequest(
                f"Timestamp {value[:40]!r} is out of range: use a time between the years "
                f"{MIN_YEAR} and {MAX_YEAR} (UTC), e.g. '2026-11-25 20:51:10.248006 UTC'."
            )
        return utc
    raise InvalidRequest(
        f"Invalid timestamp {value[:40]!r}; expected e.g. '2026-11-25 20:51:10.248006 UTC'."
    )
