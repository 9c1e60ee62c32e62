"""The JSON nesting check: linear time on any body (no regex backtracking), exact on valid JSON.

Before, a 40 KB body ``"`` + ``\\"`` * 20000 took the check about 7 s (every escaped quote
started a new string match that ran to the end), holding the worker's GIL. No server here: the
live answer to the same body is in ``test_bodies.py``.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lti_exchange.errors import InvalidRequest
from lti_exchange.web.body_limits import MAX_BODY_BYTES, MAX_JSON_DEPTH, check_json_depth

pytestmark = pytest.mark.one_backend

HALF = MAX_BODY_BYTES // 2
# Bodies at the size bound made to defeat a string-matching regex or a per-character loop.
ADVERSARIAL = {
    "escaped-quotes": '"' + '\\"' * (HALF - 1),
    "quote-backslash": '"\\' * HALF,
    "backslashes": '"' + "\\" * (MAX_BODY_BYTES - 1),
    "open-quote-brackets": '"[' * HALF,
    "empty-strings": '""' * HALF,
    "bracket-pairs": "[]" * HALF,
    "brackets-in-strings": '["[{\\"]"]' * (MAX_BODY_BYTES // 9),
}


def too_deep(text: str) -> bool:
    try:
        check_json_depth(text)
    except InvalidRequest as error:
        assert error.details == {"limit": MAX_JSON_DEPTH}
        return True
    return False


@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_check_takes_linear_time_on_adversarial_bodies(text):
    assert len(text.encode()) <= MAX_BODY_BYTES
    start = time.perf_counter()
    too_deep(text)
    assert time.perf_counter() - start < 1.0  # about 60 ms here; the old regex: hours


def test_the_reported_body_is_checked_at_once():
    start = time.perf_counter()
    assert not too_deep('"' + '\\"' * 20000)
    assert time.perf_counter() - start < 0.1


@pytest.mark.parametrize(
    "text, deep",
    [
        ("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, False),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), True),
        ('{"a": ' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1), True),
        (json.dumps(["[" * 100, {"k[": "{" * 100}]), False),  # brackets inside strings
        # an escaped backslash, then the quote that ends the string: 33 deep
        ('["\\\\", ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "]", True),
        ('["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]', False),  # \" does not end the string
        ('["é😀[\\u005b", ' + "[" * 31 + "]" * 31 + "]", False),  # unicode, 32 deep
        ('"[' + "[" * 100, False),  # unterminated string: the rest is in it (invalid anyway)
        ("[" * 100 + '"', True),
    ],
)
def test_depth_counts_brackets_outside_strings_only(text, deep):
    assert too_deep(text) is deep


def depth(value: object) -> int:
    """How deep ``value`` nests (a scalar: 0, ``[]``: 1)."""
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


TRICKY_TEXT = st.text(alphabet=st.sampled_from('[]{}"\\/:,\n\t éx😀\u2028\x00'), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TRICKY_TEXT
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, database=None)
@given(VALUES, st.integers(min_value=0, max_value=40), st.booleans(), st.booleans())
def test_check_agrees_with_the_parsed_depth(value, wrap, ascii_only, as_dict):
    for _ in range(wrap):
        value = {"k]": value} if as_dict else [value]
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert too_deep(text) is (depth(json.loads(text)) > MAX_JSON_DEPTH)
