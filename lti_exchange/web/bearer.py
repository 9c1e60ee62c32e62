"""The request's bearer token: parsed from ``Authorization``, verified once, then authorised."""

from __future__ import annotations

from collections.abc import Iterable

from flask import g, request

from lti_exchange.errors import Unauthenticated
from lti_exchange.services.authorisation import Caller, Lookup, authorise_course
from lti_exchange.tokens.access import TokenClaims
from lti_exchange.web.current import app_objects, get_session


def token_from_header(header: str) -> str:
    """The token of an ``Authorization: Bearer …`` value (401 for anything else)."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "This request needs an access token (Authorization: Bearer ...). "
            "Launch the assignment from your LMS, or run `lti-exchange login`."
        )
    return token.strip()


def current_claims() -> TokenClaims:
    """The verified claims of the request's access token (verified once per request)."""
    return claims_of(request.headers.get("Authorization", ""))


def claims_of(authorization: str) -> TokenClaims:
    """The verified claims of an ``Authorization`` value, kept on ``g`` (verified once per
    request; ``web.hot_routes`` has an app context and no Flask request)."""
    if "token_claims" not in g:
        g.token_claims = app_objects().tokens.verify(token_from_header(authorization))
    return g.token_claims


def caller_for(course_code: str, roles: Iterable[str], lookup: Lookup | None = None) -> Caller:
    """The caller acting in ``course_code`` with one of ``roles`` (401/403/404 otherwise); a
    ``lookup`` rides along with the authorising query (``Caller.found_by``)."""
    return caller_of(request.headers.get("Authorization", ""), course_code, roles, lookup)


def caller_of(
    authorization: str, course_code: str, roles: Iterable[str], lookup: Lookup | None = None
) -> Caller:
    """``caller_for`` from an ``Authorization`` value (``web.hot_routes``)."""
    return authorise_course(get_session(), claims_of(authorization), course_code, roles, lookup)
