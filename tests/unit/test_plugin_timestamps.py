"""``utc_time`` reads timestamps as nbgrader's ``parse_utc`` does, without dateutil for the
exchange's own format."""

from __future__ import annotations

import pytest
from nbgrader.utils import parse_utc

from nbgrader_plugin.timestamps import utc_time


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-25 20:51:10.248006 UTC",  # the exchange's format
        "2026-11-25 20:51:10 UTC",
        "1970-01-01 00:00:00.000000 UTC",
        "2026-11-25T20:51:10+02:00",  # anything else: parse_utc
        "2026-11-25 20:51:10.248006",
    ],
)
def test_the_same_moment_as_parse_utc(text):
    assert utc_time(text) == parse_utc(text)
    assert utc_time(text).tzinfo is None


@pytest.mark.parametrize("text", ["not a time UTC", "2026-11-25 20:51:10+01:00 UTC"])
def test_what_parse_utc_refuses_is_refused(text):
    with pytest.raises(ValueError):
        parse_utc(text)
    with pytest.raises(ValueError):
        utc_time(text)
