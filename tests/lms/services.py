"""LTI Advantage services of the simulated platform: the OAuth2 token endpoint, AGS and NRPS.

``PlatformServices`` is a mixin of ``SimulatedPlatform`` (it uses the platform's ``_lock``,
``url``, ``tool_url``, ``clients`` and ``auth_token_url``). It serves:

- ``POST /token``: OAuth2 client credentials with a signed JWT client assertion (RFC 7523, LTI
  Security §4.1): RS256 only, checked against the tool's JWKS at ``{tool_url}/lti/jwks``; ``iss``
  = ``sub`` = a registered client id, ``aud`` = the token URL, ``exp`` in the future, ``iat`` not
  in the future (30 s leeway), ``jti`` single use; scopes out of ``SUPPORTED_SCOPES`` and
  granted (``allowed_scopes``; ``offer_ags`` sets it to what launches offer): a token carries
  exactly the scopes requested, and each service checks its own.
  Errors (RFC 6749 §5.2): 400 ``invalid_request`` (missing, repeated or malformed fields, wrong
  ``client_assertion_type``), 400 ``unsupported_grant_type``, 401 ``invalid_client`` (anything
  wrong with the assertion), 400 ``invalid_scope``.
- AGS (``/api/ags/<ctx>/lineitems``, ``…/lineitems/<n>``, ``…/lineitems/<n>/scores``,
  ``…/lineitems/<n>/results``) and NRPS (``/api/nrps/<ctx>/memberships``), each requiring a bearer
  token issued here with the right scope (401 / 403), the spec's media types (406 for a wrong
  ``Accept``, 415 for a wrong ``Content-Type``), and paging by ``Link: <…>; rel="next"`` whose URL
  carries a mixed-case parameter (``Cursor=AbC-2-XyZ``): a client that lower-cases it gets 400.
- Coupled grading: ``add_link`` (an instructor's graded link: the LMS creates its column with
  ``resourceLinkId``) and deep-linking responses (``lineItem`` → the link's column); launches of
  a link with exactly one column carry it as the AGS claim's ``lineitem``. A line item POSTed
  with a ``resourceLinkId`` that is not a link of the context gets 404. A column may carry
  ``startDateTime`` / ``endDateTime`` (ISO 8601 with a zone; the due date an LMS states for it);
  ``edit_lineitem`` changes a column as an instructor would in the LMS gradebook.

Service errors answer JSON ``{"error": code, "message": text}``. Every request to these endpoints
is recorded as a ``ServiceRequest`` (``service_requests``), whatever its outcome.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import jwt
import requests
from flask import Flask, Response, request

if TYPE_CHECKING:
    import threading

# --- scopes, media types, vocabularies ----------------------------------------------------------
AGS_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/"
SCOPE_LINEITEM = AGS_SCOPE + "lineitem"
SCOPE_LINEITEM_READONLY = AGS_SCOPE + "lineitem.readonly"
SCOPE_RESULT_READONLY = AGS_SCOPE + "result.readonly"
SCOPE_SCORE = AGS_SCOPE + "score"
SCOPE_NRPS = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
SUPPORTED_SCOPES = frozenset(
    {SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY, SCOPE_RESULT_READONLY, SCOPE_SCORE, SCOPE_NRPS}
)
DEFAULT_AGS_OFFER = (SCOPE_LINEITEM, SCOPE_RESULT_READONLY, SCOPE_SCORE)

MEDIA_LINEITEM = "application/vnd.ims.lis.v2.lineitem+json"
MEDIA_LINEITEM_CONTAINER = "application/vnd.ims.lis.v2.lineitemcontainer+json"
MEDIA_SCORE = "application/vnd.ims.lis.v1.score+json"
MEDIA_RESULT_CONTAINER = "application/vnd.ims.lis.v2.resultcontainer+json"
MEDIA_MEMBERSHIPS = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"

GRANT_TYPE = "client_credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_LEEWAY = 30  # seconds, for iat / nbf of the client assertion

ACTIVITY_PROGRESS = ("Initialized", "Started", "InProgress", "Submitted", "Completed")
GRADING_PROGRESS = ("FullyGraded", "Pending", "PendingManual", "Failed", "NotReady")
MEMBER_STATUSES = ("Active", "Inactive", "Deleted")
MEMBER_FIELDS = ("name", "given_name", "family_name", "email")
LEARNER_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"

# ISO 8601 with sub-second precision and a zone: 2026-11-25T20:31:00.094+00:00 or …094Z
SCORE_TIMESTAMP = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.(\d{1,9})(Z|[+-]\d{2}:\d{2})$"
)


# --- records ----------------------------------------------------------------------------------
class ServiceError(Exception):
    """An error answer: ``status`` with JSON ``{"error": code, <detail_key>: message}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        detail_key: str = "message",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.detail_key = detail_key

    def response(self) -> Response:
        body = {"error": self.code, self.detail_key: self.message}
        answer = Response(json.dumps(body), status=self.status, mimetype="application/json")
        answer.headers.update(self.headers)
        return answer


def _oauth_error(status: int, code: str, message: str) -> ServiceError:
    return ServiceError(status, code, message, detail_key="error_description")


@dataclass
class ServiceRequest:
    """One request to the token endpoint or a service, and how the platform answered it.

    ``kind`` is one of ``token``, ``lineitems.get``, ``lineitems.post``, ``lineitem.get``,
    ``score``, ``results``, ``memberships``, ``unknown``. ``body`` is the parsed JSON (or the form
    fields of a token request), ``None`` when it did not parse.
    """

    kind: str
    method: str
    url: str
    headers: dict[str, str]
    query: dict[str, str]
    raw_body: str
    body: Any = None
    context_id: str | None = None
    lineitem_id: str | None = None
    client_id: str | None = None
    scopes: tuple[str, ...] = ()
    status: int | None = None
    error: str | None = None
    message: str | None = None
    at: float = field(default_factory=time.time)

    @property
    def user_id(self) -> str | None:
        """The ``userId`` of a score POST (``None`` when absent or not parsed)."""
        return self.body.get("userId") if isinstance(self.body, dict) else None


@dataclass
class TokenGrant:
    """An access token the platform issued."""

    token: str
    client_id: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class _Fault:
    """A switch that makes the next ``remaining`` requests of one kind fail."""

    remaining: int
    status: int
    message: str
    retry_after: int | None = None


# --- validation helpers -----------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def score_instant(value: Any) -> Decimal:
    """Seconds since the epoch (exact, up to nanoseconds) of a score ``timestamp``.

    Raises ``ValueError`` unless it is ISO 8601 with sub-second precision and a zone.
    """
    match = SCORE_TIMESTAMP.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"timestamp must be ISO 8601 with sub-second precision and a zone "
            f"(e.g. 2026-11-25T20:31:00.094+00:00), got {value!r}"
        )
    whole, fraction, zone = match.groups()
    instant = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return Decimal(int(instant.timestamp())) + Decimal("0." + fraction)


def _check_zoned_datetime(name: str, value: Any) -> None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ServiceError(400, "invalid_lineitem", f"{name} must be ISO 8601 with a zone")


def validate_lineitem(body: Any) -> dict[str, Any]:
    """The line item to store (without ``id``), or a 400 ``ServiceError``."""
    if not isinstance(body, dict):
        raise ServiceError(400, "invalid_lineitem", "the line item must be a JSON object")
    label = body.get("label")
    if not isinstance(label, str) or not label.strip():
        raise ServiceError(400, "invalid_lineitem", "label must be a non-blank string")
    maximum = body.get("scoreMaximum")
    if not _is_number(maximum) or maximum <= 0:
        raise ServiceError(400, "invalid_lineitem", "scoreMaximum must be a number > 0")
    for key in ("resourceId", "tag", "resourceLinkId"):
        if key in body and not isinstance(body[key], str):
            raise ServiceError(400, "invalid_lineitem", f"{key} must be a string")
    for key in ("startDateTime", "endDateTime"):
        if key in body:
            _check_zoned_datetime(key, body[key])
    return {k: v for k, v in body.items() if k != "id"}


def validate_score(body: Any) -> Decimal:
    """Check a score POST body (400 ``ServiceError`` if invalid); return its timestamp."""
    if not isinstance(body, dict):
        raise ServiceError(400, "invalid_score", "the score must be a JSON object")
    user_id = body.get("userId")
    if not isinstance(user_id, str) or not user_id:
        raise ServiceError(400, "invalid_score", "userId must be a non-empty string")
    given = body.get("scoreGiven")
    if given is not None:
        if not _is_number(given) or given < 0:
            raise ServiceError(400, "invalid_score", "scoreGiven must be a number >= 0")
        maximum = body.get("scoreMaximum")
        if not _is_number(maximum) or maximum <= 0:
            raise ServiceError(
                400, "invalid_score", "scoreMaximum must be a number > 0 when scoreGiven is set"
            )
    vocabularies = (
        ("activityProgress", ACTIVITY_PROGRESS),
        ("gradingProgress", GRADING_PROGRESS),
    )
    for key, allowed in vocabularies:
        if body.get(key) not in allowed:
            raise ServiceError(400, "invalid_score", f"{key} must be one of {', '.join(allowed)}")
    try:
        return score_instant(body.get("timestamp"))
    except ValueError as exc:
        raise ServiceError(400, "invalid_score", str(exc)) from None


def _positive_int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ServiceError(400, "invalid_request", f"{name} must be a positive integer")
    return int(value)


def _context_id(context: Any) -> str:
    """An ``LmsContext`` or a context id → the id."""
    return context if isinstance(context, str) else context.id


def _roster_member(entry: Any) -> dict[str, Any]:
    """An NRPS member from a roster entry.

    Entries: an ``LmsUser`` (a Learner), ``(user, role_or_roles)``, ``(user, role_or_roles,
    status)``, or a member dict (``user_id`` required; ``roles`` defaults to Learner and
    ``status`` to Active).
    """
    if isinstance(entry, dict):
        member = {"roles": [LEARNER_ROLE], "status": "Active", **entry}
        if not isinstance(member.get("user_id"), str):
            raise ValueError(f"a roster dict needs a user_id: {entry!r}")
    else:
        user, roles, status = entry, [LEARNER_ROLE], "Active"
        if isinstance(entry, tuple | list):
            user, roles, status = (*entry, "Active")[:3]
        member = user_member(user, [roles] if isinstance(roles, str) else list(roles), status)
    if member["status"] not in MEMBER_STATUSES:
        raise ValueError(f"status must be one of {MEMBER_STATUSES}: {entry!r}")
    return member


def user_member(user: Any, roles: list[str], status: str = "Active") -> dict[str, Any]:
    """The NRPS member for an ``LmsUser`` (fields that are ``None`` are left out)."""
    member: dict[str, Any] = {"user_id": user.sub, "roles": list(roles), "status": status}
    for key in MEMBER_FIELDS:
        if getattr(user, key) is not None:
            member[key] = getattr(user, key)
    if user.person_sourcedid is not None:
        member["lis_person_sourcedid"] = user.person_sourcedid
    return member


def _has_role(member: dict[str, Any], role: str) -> bool:
    """NRPS ``role`` filter: a full role URI, or its short name (``Learner``)."""
    return any(r == role or r.rsplit("#", 1)[-1] == role for r in member.get("roles", []))


# --- the mixin --------------------------------------------------------------------------------
class PlatformServices:
    """Token endpoint, AGS and NRPS for ``SimulatedPlatform`` (see the module docstring).

    Tunables (plain attributes): ``token_lifetime`` (``expires_in``, 3600), ``allowed_scopes``
    (what the platform grants, default all of ``SUPPORTED_SCOPES``), ``lineitems_page_size`` and
    ``memberships_page_size`` (2: small rosters already span pages), ``strict_media_types``
    (True: 406 / 415 on wrong ``Accept`` / ``Content-Type``), ``require_members`` (True: scores
    only for users who launched in the context or are on its roster, else 400).
    """

    # provided by SimulatedPlatform
    _lock: threading.Lock
    url: str
    tool_url: str
    clients: dict[str, list[str]]
    auth_token_url: str

    def _init_services(self) -> None:
        self.token_lifetime = 3600
        self.allowed_scopes: set[str] = set(SUPPORTED_SCOPES)
        self.lineitems_page_size = 2
        self.memberships_page_size = 2
        self.strict_media_types = True
        self.require_members = True
        self.last_token_assertion_claims: dict[str, Any] | None = None
        self._requests: list[ServiceRequest] = []
        self._grants: dict[str, TokenGrant] = {}
        self._seen_jtis: set[str] = set()
        self._contexts: dict[str, dict[str, Any]] = {}  # id -> {"id", "label", "title"}
        self._resource_links: dict[str, set[str]] = {}
        self._launched: dict[str, dict[str, dict[str, Any]]] = {}  # ctx -> user_id -> member
        self._rosters: dict[str, tuple[list[dict[str, Any]], bool]] = {}
        self._lineitems: dict[str, list[dict[str, Any]]] = {}
        self._scores: dict[tuple[str, str], dict[str, Any]] = {}
        self._score_instants: dict[tuple[str, str], Decimal] = {}
        self._faults: dict[str, _Fault] = {}
        self._rejected_users: dict[str, tuple[int, str]] = {}
        # What launches' AGS claims offer (``offer_ags``); None: no AGS claim at all.
        self.ags_offered_scopes: list[str] | None = list(DEFAULT_AGS_OFFER)
        self.ags_offer_lineitems = True
        self._links: dict[str, dict[str, dict[str, Any]]] = {}  # ctx -> link id -> link
        self._deep_link_contexts: dict[str, str] = {}  # the request's ``data`` -> ctx
        self._last_deep_link_context: str | None = None
        self.deep_linked_links: list[dict[str, Any]] = []

    # -- accessors for tests -----------------------------------------------------------------
    @property
    def service_requests(self) -> list[ServiceRequest]:
        """Every request to ``/token`` and ``/api/…``, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def token_requests(self) -> int:
        """How many ``POST /token`` requests arrived (successful or not)."""
        with self._lock:
            return sum(1 for r in self._requests if r.kind == "token")

    @property
    def token_request_log(self) -> list[ServiceRequest]:
        with self._lock:
            return [r for r in self._requests if r.kind == "token"]

    @property
    def score_posts(self) -> list[ServiceRequest]:
        """Every score POST (accepted, rejected or failed by a fault switch), oldest first."""
        with self._lock:
            return [r for r in self._requests if r.kind == "score"]

    def scores(self, context: Any) -> dict[tuple[str, str], dict[str, Any]]:
        """``{(lineitem_id, user_id): the latest accepted score body}`` of one context."""
        prefix = self._lineitems_url(_context_id(context)) + "/"
        with self._lock:
            return {
                key: dict(score) for key, score in self._scores.items() if key[0].startswith(prefix)
            }

    def lineitems(self, context: Any) -> list[dict[str, Any]]:
        """The line items created in one context (with ``id``), in creation order."""
        with self._lock:
            return [dict(item) for item in self._lineitems.get(_context_id(context), [])]

    def members(self, context: Any) -> list[dict[str, Any]]:
        """The NRPS members of a context, as ``GET …/memberships`` would list them."""
        with self._lock:
            return [dict(m) for m in self._members_locked(_context_id(context))]

    @property
    def issued_tokens(self) -> list[TokenGrant]:
        with self._lock:
            return list(self._grants.values())

    # -- switches for tests ------------------------------------------------------------------
    def fail_next_score_posts(
        self,
        n: int = 1,
        status: int = 503,
        *,
        message: str = "the gradebook is temporarily unavailable",
        retry_after: int | None = None,
    ) -> None:
        """The next ``n`` score POSTs answer ``status`` (before authentication and validation)."""
        with self._lock:
            self._faults["score"] = _Fault(n, status, message, retry_after)

    def fail_next_token_requests(
        self,
        n: int = 1,
        status: int = 503,
        *,
        message: str = "the authorization server is temporarily unavailable",
        retry_after: int | None = None,
    ) -> None:
        """The next ``n`` token requests answer ``status`` (before any check)."""
        with self._lock:
            self._faults["token"] = _Fault(n, status, message, retry_after)

    def reject_user(
        self, user_id: str, status: int = 400, message: str = "this user cannot be graded"
    ) -> None:
        """Every score POST for ``user_id`` answers ``status`` with ``message``."""
        with self._lock:
            self._rejected_users[user_id] = (status, message)

    def accept_user(self, user_id: str) -> None:
        """Undo ``reject_user``."""
        with self._lock:
            self._rejected_users.pop(user_id, None)

    def clear_faults(self) -> None:
        """Turn off every fault switch and user rejection."""
        with self._lock:
            self._faults.clear()
            self._rejected_users.clear()

    def expire_tokens(self) -> None:
        """Make every issued access token expired (the next service call answers 401)."""
        with self._lock:
            for grant in self._grants.values():
                grant.expires_at = 0

    def set_roster(self, context: Any, members: Iterable[Any], *, include_launched=True) -> None:
        """The NRPS roster of ``context`` (an ``LmsContext`` or its id).

        ``members``: ``LmsUser`` (Learner), ``(user, role_or_roles[, status])`` or member dicts
        (see ``_roster_member``). With ``include_launched``, users who launched in the context
        and are not on the roster are listed as well, with their launch roles.
        """
        ctx = _context_id(context)
        roster = [_roster_member(entry) for entry in members]
        with self._lock:
            self._remember_context(context)
            self._rosters[ctx] = (roster, include_launched)

    def add_context(self, context: Any) -> None:
        """Make a context known without a launch (services of unknown contexts answer 404)."""
        with self._lock:
            self._remember_context(context)

    def add_resource_link(self, context: Any, resource_link_id: str) -> None:
        """A resource link a line item's ``resourceLinkId`` may name (launches add theirs)."""
        with self._lock:
            self._remember_context(context)
            self._resource_links.setdefault(_context_id(context), set()).add(resource_link_id)

    # -- what launches offer, links and their columns (coupled grading) ---------------------
    def offer_ags(self, scopes: Iterable[str] | None, *, lineitems: bool = True) -> None:
        """Launches' AGS claims offer ``scopes`` (None: no AGS claim), with the ``lineitems``
        container or not; the token endpoint then grants only these (and NRPS)."""
        self.ags_offered_scopes = None if scopes is None else list(scopes)
        self.ags_offer_lineitems = lineitems
        self.allowed_scopes = set(self.ags_offered_scopes or []) | {SCOPE_NRPS}

    def ags_claim(self, context: Any, resource_link: Any) -> dict[str, Any] | None:
        """The AGS claim of a launch in ``context``: the offered scopes, the container (if
        offered) and ``lineitem`` when the launched link has exactly one column."""
        if self.ags_offered_scopes is None:
            return None
        ctx = _context_id(context)
        claim: dict[str, Any] = {"scope": list(self.ags_offered_scopes)}
        if self.ags_offer_lineitems:
            claim["lineitems"] = self._lineitems_url(ctx)
        link_id = resource_link.get("id") if isinstance(resource_link, dict) else None
        if link_id is not None:
            with self._lock:
                columns = [
                    item["id"]
                    for item in self._lineitems.get(ctx, [])
                    if item.get("resourceLinkId") == link_id
                ]
            if len(columns) == 1:
                claim["lineitem"] = columns[0]
        return claim

    def link_custom(self, context: Any, link_id: str) -> dict[str, str] | None:
        """The custom parameters the LMS keeps for a link (from deep linking or ``add_link``)."""
        if context is None:
            return None
        with self._lock:
            link = self._links.get(_context_id(context), {}).get(link_id)
        return dict(link["custom"]) if link and link.get("custom") else None

    def add_link(
        self,
        context: Any,
        *,
        title: str = "Problem set",
        custom: dict[str, str] | None = None,
        score_maximum: float | None = None,
        lineitem: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A resource link an instructor added in the LMS; with ``score_maximum`` (or a
        ``lineitem`` body) the LMS creates its gradebook column, tied to the link (coupled).

        Returns the ``resource_link`` claim to launch it with (``launch(resource_link=…)``).
        """
        ctx = _context_id(context)
        link: dict[str, Any] = {
            "id": f"rl-{secrets.token_hex(4)}",
            "title": title,
            "custom": dict(custom or {}),
        }
        body = lineitem
        if body is None and score_maximum is not None:
            body = {"label": title, "scoreMaximum": score_maximum}
        column = validate_lineitem(body) if body is not None else None
        with self._lock:
            self._remember_context(context)
            self._links.setdefault(ctx, {})[link["id"]] = link
            self._resource_links.setdefault(ctx, set()).add(link["id"])
            if column is not None:
                items = self._lineitems.setdefault(ctx, [])
                column = {
                    "id": f"{self._lineitems_url(ctx)}/{len(items) + 1}",
                    **column,
                    "resourceLinkId": link["id"],
                }
                items.append(column)
        return {"id": link["id"], "title": title}

    def edit_lineitem(self, context: Any, lineitem_id: str, **changes: Any) -> dict[str, Any]:
        """An instructor edits a column in the LMS gradebook, e.g. its due date
        (``endDateTime="2031-05-01T12:00:00Z"``; None removes a field). Returns the column."""
        ctx = _context_id(context)
        with self._lock:
            items = self._lineitems.get(ctx, [])
            item = next((i for i in items if i["id"] == lineitem_id), None)
            assert item is not None, f"no line item {lineitem_id!r} in context {ctx!r}"
            edited = {k: v for k, v in {**item, **changes}.items() if v is not None}
            validate_lineitem(edited)
            item.clear()
            item.update(edited)
            return dict(item)

    def _note_deep_linking(self, context: Any, settings: dict[str, Any]) -> None:
        """Remember the context of a deep-linking request, to add the returned links there."""
        if context is None:
            return
        with self._lock:
            self._last_deep_link_context = _context_id(context)
            if isinstance(settings.get("data"), str):
                self._deep_link_contexts[settings["data"]] = _context_id(context)

    def _add_deep_linked_links(self, claims: dict[str, Any]) -> None:
        """Add the links of a verified LtiDeepLinkingResponse to the context of its request
        (found by its ``data``, else the latest request); a ``lineItem`` becomes the link's
        column. Raises ``ValueError`` for an unusable item."""
        data = claims.get("https://purl.imsglobal.org/spec/lti-dl/claim/data")
        with self._lock:
            ctx = self._deep_link_contexts.get(data) if isinstance(data, str) else None
            ctx = ctx or self._last_deep_link_context
        if ctx is None:
            raise ValueError("no deep-linking request in a context to answer")
        items = claims.get("https://purl.imsglobal.org/spec/lti-dl/claim/content_items") or []
        for item in items:
            if not isinstance(item, dict) or item.get("type") != "ltiResourceLink":
                continue
            title = item.get("title") or "Untitled"
            body = item.get("lineItem")
            if isinstance(body, dict):
                body = {"label": title, **body}
            try:
                added = self.add_link(ctx, title=title, custom=item.get("custom"), lineitem=body)
            except ServiceError as exc:
                raise ValueError(exc.message) from None
            with self._lock:
                self.deep_linked_links.append({**added, "context_id": ctx})

    # -- launches feed the roster and the resource links -------------------------------------
    def _note_launch(
        self, context: Any, user: Any, roles: list[str] | None, resource_link: Any
    ) -> None:
        """Remember who launched where (NRPS) and the context's resource links (AGS)."""
        if context is None:
            return
        with self._lock:
            self._remember_context(context)
            self._launched.setdefault(context.id, {})[user.sub] = user_member(user, roles or [])
            if isinstance(resource_link, dict) and isinstance(resource_link.get("id"), str):
                self._resource_links.setdefault(context.id, set()).add(resource_link["id"])

    def _remember_context(self, context: Any) -> None:
        """Record a context (call with the lock held); an ``LmsContext`` brings label/title."""
        ctx = _context_id(context)
        known = self._contexts.setdefault(ctx, {"id": ctx})
        if not isinstance(context, str):
            known.update({"label": context.label, "title": context.title})

    def _members_locked(self, ctx: str) -> list[dict[str, Any]]:
        roster, include_launched = self._rosters.get(ctx, ([], True))
        members = list(roster)
        if include_launched:
            listed = {m["user_id"] for m in roster}
            launched = self._launched.get(ctx, {})
            members += [m for user_id, m in launched.items() if user_id not in listed]
        return members

    # -- routes ------------------------------------------------------------------------------
    def _add_service_routes(self, app: Flask) -> None:
        routes: list[tuple[str, str, str, Callable[..., Response]]] = [
            ("/token", "POST", "token", self._token),
            ("/api/ags/<ctx>/lineitems", "GET", "lineitems.get", self._get_lineitems),
            ("/api/ags/<ctx>/lineitems", "POST", "lineitems.post", self._post_lineitem),
            ("/api/ags/<ctx>/lineitems/<int:n>", "GET", "lineitem.get", self._get_lineitem),
            ("/api/ags/<ctx>/lineitems/<int:n>/scores", "POST", "score", self._post_score),
            ("/api/ags/<ctx>/lineitems/<int:n>/results", "GET", "results", self._get_results),
            ("/api/nrps/<ctx>/memberships", "GET", "memberships", self._get_memberships),
        ]
        for rule, method, kind, handler in routes:
            app.add_url_rule(
                rule,
                endpoint=f"service-{kind}",
                view_func=self._recorded(kind, handler),
                methods=[method],
            )

        def unknown(record: ServiceRequest, rest: str = "") -> Response:
            raise ServiceError(404, "not_found", f"no such service: {request.method} /{rest}")

        app.add_url_rule(
            "/api/<path:rest>",
            endpoint="service-unknown",
            view_func=self._recorded("unknown", unknown),
            methods=["GET", "POST", "PUT", "DELETE"],
        )

    def _recorded(self, kind: str, handler: Callable[..., Response]) -> Callable[..., Response]:
        """Wrap a handler: record the request and its answer; turn ``ServiceError`` into JSON."""

        def view(**params: Any) -> Response:
            record = ServiceRequest(
                kind=kind,
                method=request.method,
                url=request.url,
                headers=dict(request.headers),
                query=request.args.to_dict(),
                raw_body=request.get_data(as_text=True),
                context_id=params.get("ctx"),
            )
            record.body = _try_json(record.raw_body)
            with self._lock:
                self._requests.append(record)
            try:
                answer = handler(record, **params)
            except ServiceError as exc:
                record.error, record.message = exc.code, exc.message
                answer = exc.response()
            record.status = answer.status_code
            return answer

        view.__name__ = f"service_{kind.replace('.', '_')}"
        return view

    def _take_fault(self, kind: str) -> None:
        """Raise the answer of an armed fault switch for ``kind``, if any."""
        with self._lock:
            fault = self._faults.get(kind)
            if fault is None or fault.remaining <= 0:
                return
            fault.remaining -= 1
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        code = "temporarily_unavailable" if kind == "token" else "service_unavailable"
        raise ServiceError(fault.status, code, fault.message, headers=headers)

    # -- the token endpoint ------------------------------------------------------------------
    def _token(self, record: ServiceRequest) -> Response:
        self._take_fault("token")
        record.body = request.form.to_dict()
        form = self._token_form()
        claims = self._verify_client_assertion(form["client_assertion"])
        record.client_id = claims["iss"]
        scopes = self._granted_scopes(form["scope"])
        grant = TokenGrant(
            token=secrets.token_urlsafe(32),
            client_id=claims["iss"],
            scopes=scopes,
            expires_at=time.time() + self.token_lifetime,
        )
        record.scopes = scopes
        with self._lock:
            self._grants[grant.token] = grant
        body = {
            "access_token": grant.token,
            "token_type": "bearer",
            "expires_in": self.token_lifetime,
            "scope": " ".join(scopes),
        }
        answer = Response(json.dumps(body), mimetype="application/json")
        answer.headers["Cache-Control"] = "no-store"
        return answer

    @staticmethod
    def _token_form() -> dict[str, str]:
        """The token request's form fields, each present exactly once, or ``invalid_request``."""
        if request.mimetype != "application/x-www-form-urlencoded":
            raise _oauth_error(
                400, "invalid_request", "the body must be application/x-www-form-urlencoded"
            )
        form: dict[str, str] = {}
        for key in ("grant_type", "client_assertion_type", "client_assertion", "scope"):
            values = request.form.getlist(key)
            if len(values) != 1 or not values[0]:
                raise _oauth_error(400, "invalid_request", f"{key} must be given exactly once")
            form[key] = values[0]
        if form["grant_type"] != GRANT_TYPE:
            raise _oauth_error(400, "unsupported_grant_type", f"grant_type must be {GRANT_TYPE!r}")
        if form["client_assertion_type"] != ASSERTION_TYPE:
            raise _oauth_error(
                400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE!r}"
            )
        return form

    def _verify_client_assertion(self, assertion: str) -> dict[str, Any]:
        """Check the tool's signed JWT (LTI Security §4.1.1); return its claims.

        Raises 401 ``invalid_client``. A ``jti`` is spent once the signature and claims check
        out (even if the scope is then refused).
        """

        def refuse(why: str) -> ServiceError:
            return _oauth_error(401, "invalid_client", why)

        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError as exc:
            raise refuse(f"the client assertion is not a JWT: {exc}") from None
        if header.get("alg") != "RS256":
            raise refuse(f"alg must be RS256, got {header.get('alg')!r}")
        key = self._tool_key(header.get("kid"), refuse)
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise refuse(f"the client assertion does not verify: {exc}") from None
        problem = self._assertion_claims_problem(claims)
        if problem:
            raise refuse(problem)
        with self._lock:
            if claims["jti"] in self._seen_jtis:
                raise refuse(f"jti {claims['jti']!r} was already used")
            self._seen_jtis.add(claims["jti"])
            self.last_token_assertion_claims = dict(claims)
        return claims

    def _tool_key(self, kid: Any, refuse: Callable[[str], ServiceError]) -> Any:
        """The tool's public key with this ``kid``, fetched from ``{tool_url}/lti/jwks``."""
        if not isinstance(kid, str) or not kid:
            raise refuse("the client assertion has no kid")
        try:
            keys = requests.get(self.tool_url + "/lti/jwks", timeout=30).json()["keys"]
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise refuse(f"cannot fetch the tool's JWKS: {exc}") from None
        match = [k for k in keys if isinstance(k, dict) and k.get("kid") == kid]
        if len(match) != 1:
            raise refuse(f"kid {kid!r} is not (exactly once) in the tool's JWKS")
        try:
            return jwt.PyJWK(match[0], algorithm="RS256").key
        except jwt.PyJWKError as exc:
            raise refuse(f"the tool's key {kid!r} is unusable: {exc}") from None

    def _assertion_claims_problem(self, claims: dict[str, Any]) -> str | None:
        """What is wrong with the assertion's claims (``None``: nothing)."""
        now = time.time()
        iss = claims.get("iss")
        if not isinstance(iss, str) or iss not in self.clients:
            return f"iss {iss!r} is not a client id registered on this platform"
        if claims.get("sub") != iss:
            return f"sub must equal iss ({iss!r}), got {claims.get('sub')!r}"
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.auth_token_url not in audiences:
            return f"aud must be (or contain) {self.auth_token_url!r}, got {aud!r}"
        if not _is_number(claims.get("exp")) or claims["exp"] <= now:
            return f"exp must be in the future, got {claims.get('exp')!r} (now {int(now)})"
        if not _is_number(claims.get("iat")) or claims["iat"] > now + CLOCK_LEEWAY:
            return f"iat must not be in the future, got {claims.get('iat')!r} (now {int(now)})"
        if "nbf" in claims and (
            not _is_number(claims["nbf"]) or claims["nbf"] > now + CLOCK_LEEWAY
        ):
            return f"nbf is in the future: {claims['nbf']!r}"
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            return "jti must be a non-empty string"
        deployment_id = claims.get("https://purl.imsglobal.org/spec/lti/claim/deployment_id")
        if deployment_id is not None and deployment_id not in self.clients[iss]:
            return f"deployment_id {deployment_id!r} is not a deployment of client {iss!r}"
        return None

    def _granted_scopes(self, requested: str) -> tuple[str, ...]:
        scopes = tuple(dict.fromkeys(requested.split()))
        unknown = [s for s in scopes if s not in SUPPORTED_SCOPES]
        if unknown:
            raise _oauth_error(400, "invalid_scope", f"unknown scopes: {' '.join(unknown)}")
        refused = [s for s in scopes if s not in self.allowed_scopes]
        if refused:
            raise _oauth_error(400, "invalid_scope", f"scopes not granted: {' '.join(refused)}")
        return scopes

    # -- what every service request must bring -----------------------------------------------
    def _authorize(self, record: ServiceRequest, *needed: str) -> None:
        """A valid bearer token with one of the ``needed`` scopes (401 / 403 otherwise)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ServiceError(
                401, "invalid_token", "a bearer token is required", headers=_bearer_challenge()
            )
        with self._lock:
            grant = self._grants.get(token.strip())
        if grant is None or grant.expires_at <= time.time():
            what = "unknown" if grant is None else "expired"
            raise ServiceError(
                401,
                "invalid_token",
                f"the access token is {what}",
                headers=_bearer_challenge("invalid_token"),
            )
        record.client_id, record.scopes = grant.client_id, grant.scopes
        if not set(needed) & set(grant.scopes):
            raise ServiceError(
                403,
                "insufficient_scope",
                f"this request needs one of the scopes: {' '.join(needed)}",
                headers=_bearer_challenge("insufficient_scope"),
            )

    def _check_accept(self, media_type: str) -> None:
        accept = request.headers.get("Accept", "")
        if self.strict_media_types and media_type not in accept.lower():
            raise ServiceError(406, "not_acceptable", f"Accept must include {media_type}")

    def _check_content_type(self, media_type: str) -> None:
        if self.strict_media_types and request.mimetype != media_type:
            raise ServiceError(415, "unsupported_media_type", f"Content-Type must be {media_type}")

    @staticmethod
    def _json_body(record: ServiceRequest) -> Any:
        try:
            record.body = json.loads(record.raw_body)
        except ValueError:
            raise ServiceError(400, "invalid_json", "the body is not JSON") from None
        return record.body

    def _known_context(self, ctx: str) -> None:
        with self._lock:
            known = ctx in self._contexts
        if not known:
            raise ServiceError(404, "not_found", f"no context {ctx!r} on this platform")

    def _lineitem(self, ctx: str, n: int, record: ServiceRequest) -> dict[str, Any]:
        self._known_context(ctx)
        with self._lock:
            items = self._lineitems.get(ctx, [])
            item = dict(items[n - 1]) if 1 <= n <= len(items) else None
        if item is None:
            raise ServiceError(404, "not_found", f"no line item {n} in context {ctx!r}")
        record.lineitem_id = item["id"]
        return item

    def _lineitems_url(self, ctx: str) -> str:
        return f"{self.url}/api/ags/{ctx}/lineitems"

    # -- paging ------------------------------------------------------------------------------
    @staticmethod
    def _cursor(page: int) -> str:
        return f"AbC-{page}-XyZ"  # mixed case on purpose: URLs must be followed verbatim

    def _page(
        self, items: list[Any], default_size: int, kept: dict[str, str]
    ) -> tuple[list[Any], str | None]:
        """One page of ``items`` for this request, and the ``Link`` header value (or ``None``).

        ``kept`` are the request's filter parameters, repeated in the next-page URL.
        """
        size = _positive_int(request.args.get("limit"), "limit") or default_size
        page = _positive_int(request.args.get("page"), "page") or 1
        if page > 1 and request.args.get("Cursor") != self._cursor(page):
            raise ServiceError(
                400,
                "invalid_cursor",
                "page without its Cursor: the next-page URL of the Link header must be used "
                "verbatim (query parameters are case-sensitive)",
            )
        start = (page - 1) * size
        if start + size >= len(items):
            return items[start:], None
        query = dict(kept)
        if "limit" in request.args:
            query["limit"] = request.args["limit"]
        query.update({"page": str(page + 1), "Cursor": self._cursor(page + 1)})
        next_url = f"{request.base_url}?{urlencode(query)}"
        return items[start : start + size], f'<{next_url}>; rel="next"'

    @staticmethod
    def _json_answer(body: Any, media_type: str, link: str | None, status: int = 200) -> Response:
        answer = Response(json.dumps(body), status=status, mimetype=media_type)
        if link:
            answer.headers["Link"] = link
        return answer

    # -- AGS ---------------------------------------------------------------------------------
    def _get_lineitems(self, record: ServiceRequest, ctx: str) -> Response:
        self._authorize(record, SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY)
        self._check_accept(MEDIA_LINEITEM_CONTAINER)
        self._known_context(ctx)
        filters = {
            "resource_id": "resourceId",
            "tag": "tag",
            "resource_link_id": "resourceLinkId",
        }
        kept = {param: request.args[param] for param in filters if param in request.args}
        with self._lock:
            items = [dict(item) for item in self._lineitems.get(ctx, [])]
        for param, value in kept.items():
            items = [item for item in items if item.get(filters[param]) == value]
        page, link = self._page(items, self.lineitems_page_size, kept)
        return self._json_answer(page, MEDIA_LINEITEM_CONTAINER, link)

    def _get_lineitem(self, record: ServiceRequest, ctx: str, n: int) -> Response:
        self._authorize(record, SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY)
        self._check_accept(MEDIA_LINEITEM)
        return self._json_answer(self._lineitem(ctx, n, record), MEDIA_LINEITEM, None)

    def _post_lineitem(self, record: ServiceRequest, ctx: str) -> Response:
        self._authorize(record, SCOPE_LINEITEM)
        self._check_content_type(MEDIA_LINEITEM)
        self._known_context(ctx)
        item = validate_lineitem(self._json_body(record))
        link = item.get("resourceLinkId")
        with self._lock:
            if link is not None and link not in self._resource_links.get(ctx, set()):
                raise ServiceError(
                    404, "not_found", f"no resource link {link!r} in context {ctx!r}"
                )
            items = self._lineitems.setdefault(ctx, [])
            item = {"id": f"{self._lineitems_url(ctx)}/{len(items) + 1}", **item}
            items.append(item)
        record.lineitem_id = item["id"]
        return self._json_answer(item, MEDIA_LINEITEM, None, status=201)

    def _post_score(self, record: ServiceRequest, ctx: str, n: int) -> Response:
        self._take_fault("score")
        self._authorize(record, SCOPE_SCORE)
        self._check_content_type(MEDIA_SCORE)
        lineitem_id = self._lineitem(ctx, n, record)["id"]
        body = self._json_body(record)
        user_id = body.get("userId") if isinstance(body, dict) else None
        with self._lock:
            rejected = self._rejected_users.get(user_id) if isinstance(user_id, str) else None
        if rejected is not None:
            raise ServiceError(rejected[0], "user_rejected", rejected[1])
        instant = validate_score(body)
        key = (lineitem_id, body["userId"])
        with self._lock:
            members = {m["user_id"] for m in self._members_locked(ctx)}
            if self.require_members and body["userId"] not in members:
                raise ServiceError(
                    400, "unknown_user", f"user {body['userId']!r} is not in context {ctx!r}"
                )
            last = self._score_instants.get(key)
            if last is not None and instant <= last:
                raise ServiceError(
                    409,
                    "stale_timestamp",
                    f"timestamp {body['timestamp']} is not later than the last accepted one "
                    f"for this user and line item ({self._scores[key]['timestamp']})",
                )
            self._score_instants[key] = instant
            self._scores[key] = dict(body)
        return Response(status=204)

    def _get_results(self, record: ServiceRequest, ctx: str, n: int) -> Response:
        self._authorize(record, SCOPE_RESULT_READONLY)
        self._check_accept(MEDIA_RESULT_CONTAINER)
        lineitem_id = self._lineitem(ctx, n, record)["id"]
        wanted = request.args.get("user_id")
        with self._lock:
            scores = [
                score
                for (item, user_id), score in self._scores.items()
                if item == lineitem_id and wanted in (None, user_id)
            ]
        results = [_result(lineitem_id, score) for score in scores]
        kept = {"user_id": wanted} if wanted is not None else {}
        page, link = self._page(results, self.lineitems_page_size, kept)
        return self._json_answer(page, MEDIA_RESULT_CONTAINER, link)

    # -- NRPS --------------------------------------------------------------------------------
    def _get_memberships(self, record: ServiceRequest, ctx: str) -> Response:
        self._authorize(record, SCOPE_NRPS)
        self._check_accept(MEDIA_MEMBERSHIPS)
        self._known_context(ctx)
        kept = {k: request.args[k] for k in ("role", "rlid") if k in request.args}
        with self._lock:
            members = [dict(m) for m in self._members_locked(ctx)]
            context = dict(self._contexts[ctx])
            links = set(self._resource_links.get(ctx, set()))
        if "rlid" in kept and kept["rlid"] not in links:
            raise ServiceError(404, "not_found", f"no resource link {kept['rlid']!r} in {ctx!r}")
        if "role" in kept:
            members = [m for m in members if _has_role(m, kept["role"])]
        page, link = self._page(members, self.memberships_page_size, kept)
        body = {"id": request.url, "context": context, "members": page}
        return self._json_answer(body, MEDIA_MEMBERSHIPS, link)


def _result(lineitem_id: str, score: dict[str, Any]) -> dict[str, Any]:
    """The AGS result for a stored score (the score as posted, not rescaled)."""
    result: dict[str, Any] = {
        "id": f"{lineitem_id}/results/{score['userId']}",
        "scoreOf": lineitem_id,
        "userId": score["userId"],
    }
    if score.get("scoreGiven") is not None:
        result["resultScore"] = score["scoreGiven"]
        result["resultMaximum"] = score.get("scoreMaximum", 1)
    if score.get("comment") is not None:
        result["comment"] = score["comment"]
    return result


def _try_json(text: str) -> Any:
    """``text`` parsed as JSON, or ``None``."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _bearer_challenge(error: str | None = None) -> dict[str, str]:
    value = 'Bearer realm="simulated-lms"'
    if error:
        value += f', error="{error}"'
    return {"WWW-Authenticate": value}


def score_timestamp(moment: datetime | None = None) -> str:
    """A valid score timestamp (milliseconds, UTC), e.g. for tests posting scores directly."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def later(timestamp: str, milliseconds: int = 1) -> str:
    """``timestamp`` plus ``milliseconds`` (same format as ``score_timestamp``)."""
    return score_timestamp(datetime.fromisoformat(timestamp) + timedelta(milliseconds=milliseconds))
