"""One pattern for every identifier that names a course, assignment, notebook or student."""

from __future__ import annotations

import re

from lti_exchange.errors import InvalidIdentifier

MAX_IDENTIFIER_LENGTH = 100
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$")
IDENTIFIER_RULE = (
    "letters, digits, '_', '.', '@' and '-', starting with a letter, digit or '_', "
    f"at most {MAX_IDENTIFIER_LENGTH} characters"
)


def is_valid_identifier(value: object) -> bool:
    """True when ``value`` is safe to use as a course, assignment, notebook or student id."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_IDENTIFIER_LENGTH
        and IDENTIFIER_PATTERN.fullmatch(value) is not None  # not match: "$" accepts a final "\n"
    )


def validate_identifier(value: object, kind: str) -> str:
    """Return ``value`` when it is a valid identifier; raise ``InvalidIdentifier`` otherwise."""
    if not is_valid_identifier(value):
        shown = repr(value)[:60]
        raise InvalidIdentifier(
            f"Invalid {kind} id {shown}: use {IDENTIFIER_RULE}.",
            details={"field": kind, "rule": IDENTIFIER_RULE},
        )
    return value  # type: ignore[return-value]
