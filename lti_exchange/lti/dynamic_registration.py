"""LTI Dynamic Registration (1EdTech LTI-DR 1.0), tool side; no Flask (the page is in
``register_view``).

1. ``lti-exchange platform invite`` stores a one-time invitation (``kv_store``, only the token's
   SHA-256, with a TTL) and prints ``<base>/lti/register?invite=<token>``.
2. The LMS opens that URL adding ``openid_configuration`` (a URL) and usually
   ``registration_token``. ``register_platform`` checks the parameters, then consumes the
   invitation atomically (single use, before any request leaves: a failed attempt needs a new
   invitation), fetches the platform's OpenID configuration (https unless the host is loopback;
   no redirects; at most ``MAX_DOCUMENT`` bytes and ``FETCH_SECONDS`` seconds; its ``issuer``
   must be a prefix of the configuration URL on a path boundary), checks it supports what we
   need, POSTs the tool's registration with the registration token as a Bearer, and stores the
   returned ``client_id`` and deployment id as a new organisation, as ``platform add`` does.

The only tool-wide custom parameter is ``due_at=$ResourceLink.submission.endDateTime`` (each
launch then states its link's due date). A course's nbgrader id comes from the context label
(``services.course_mapping``) or from ``nbgrader_course_id`` set on a link (deep linking sets
it); a tool-wide ``$Context.id`` would make ids the LMS's opaque numbers. The scopes asked for are
those the tool uses (line items, scores, the roster) and the LMS offers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lti_exchange.errors import ApiError
from lti_exchange.lti.registrations import RegistrationInput, upsert_registration
from lti_exchange.lti.store import DatabaseStore
from lti_exchange.models import LtiRegistration, Organisation

INVITE_PREFIX = "lti-invite:"
DEFAULT_INVITE_TTL = 24 * 3600
MAX_INVITE_TTL = 30 * 24 * 3600
MAX_DOCUMENT = 64 * 1024
FETCH_SECONDS = 15.0
MAX_URL = 1000
MAX_ID = 255
MAX_REGISTRATION_TOKEN = 8192

PLATFORM_CONFIG = "https://purl.imsglobal.org/spec/lti-platform-configuration"
TOOL_CONFIG = "https://purl.imsglobal.org/spec/lti-tool-configuration"
RESOURCE_LINK = "LtiResourceLinkRequest"
DEEP_LINKING = "LtiDeepLinkingRequest"
SCOPES = (
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
    "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
)
CLAIMS = ["iss", "sub", "name", "given_name", "family_name", "email"]
# Tool-wide custom parameters: only the due date (the LMS substitutes the link's own); see the
# module docstring for why the course id is not one of them.
CUSTOM_PARAMETERS = {"due_at": "$ResourceLink.submission.endDateTime"}
NEW_INVITE = "Ask the exchange's administrator for a new URL (`lti-exchange platform invite`)."


class RegistrationRefused(ApiError):
    status, code = 400, "registration_refused"


# -- invitations ------------------------------------------------------------------------------
def _invite_key(token: str) -> str:
    return INVITE_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def create_invitation(store: DatabaseStore, name: str | None, ttl: int) -> str:
    """Store a one-time invitation valid for ``ttl`` seconds; return its token (shown once)."""
    if not 60 <= ttl <= MAX_INVITE_TTL:
        raise ValueError(f"--ttl must be between 60 and {MAX_INVITE_TTL} seconds.")
    token = secrets.token_urlsafe(32)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    if not store.add(_invite_key(token), {"name": name, "created": created}, ttl):
        raise RuntimeError("could not store the invitation; try again")  # a 256-bit collision
    return token


def invitation_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/lti/register?invite={token}"


def _consume_invitation(store: DatabaseStore, token: str) -> dict[str, Any]:
    """The invitation's data, deleted in the same step (a second caller gets nothing)."""
    found = store.pop(_invite_key(token))
    if found is None:
        raise RegistrationRefused(
            "This registration URL is not valid: it has expired, was already used, or was not "
            f"made by this exchange. Nothing was registered. {NEW_INVITE}",
            status=403,
            code="invitation_invalid",
        )
    return found if isinstance(found, dict) else {}


# -- URLs and bounded HTTP --------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def checked_url(value: object, what: str) -> str:
    """``value`` when it is an https URL (http only for a loopback host), without credentials
    or fragment and at most ``MAX_URL`` characters; else ``RegistrationRefused``."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL:
        raise RegistrationRefused(f"The LMS gave no usable {what} (a URL is required).")
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise RegistrationRefused(f"The LMS's {what} {value[:200]!r} is not a URL.") from exc
    if parts.scheme not in ("https", "http") or not host or "@" in parts.netloc or parts.fragment:
        raise RegistrationRefused(f"The LMS's {what} {value[:200]!r} is not a plain http(s) URL.")
    if parts.scheme == "http" and not _is_loopback(host):
        raise RegistrationRefused(
            f"The LMS's {what} {value[:200]!r} does not use https. Registration needs https, so "
            "that nobody between the LMS and this exchange can change what is registered.",
            code="https_required",
        )
    return value


def issuer_matches(issuer: str, config_url: str) -> bool:
    """True when ``issuer`` is a prefix of ``config_url`` on a path boundary (same scheme and
    host; LTI-DR 1.0 §3.5.1), so a configuration cannot claim another platform's issuer."""
    i, c = urlsplit(issuer), urlsplit(config_url)
    if i.query or i.fragment or (i.scheme, i.netloc.lower()) != (c.scheme, c.netloc.lower()):
        return False
    path = i.path.rstrip("/")
    return not path or c.path == path or c.path.startswith(path + "/")


def _read_body(response: requests.Response, what: str, deadline: float) -> bytes:
    """At most ``MAX_DOCUMENT`` bytes of ``response``, read before ``deadline`` (one socket read
    at a time, so a server dripping bytes cannot hold the request open)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_DOCUMENT:
        raise RegistrationRefused(f"The LMS's {what} is larger than {MAX_DOCUMENT} bytes.")
    body = bytearray()
    while chunk := response.raw.read1(16 * 1024, decode_content=True):
        body += chunk
        if len(body) > MAX_DOCUMENT:
            raise RegistrationRefused(f"The LMS's {what} is larger than {MAX_DOCUMENT} bytes.")
        if time.monotonic() > deadline:
            raise RegistrationRefused(f"The LMS took too long to send its {what}.")
    return bytes(body)


def _read_json(response: requests.Response, what: str, deadline: float) -> dict[str, Any]:
    """The JSON object of ``response`` (bounded as ``_read_body``)."""
    try:
        data = json.loads(_read_body(response, what, deadline))
    except ValueError as exc:
        raise RegistrationRefused(f"The LMS's {what} is not JSON.") from exc
    if not isinstance(data, dict):
        raise RegistrationRefused(f"The LMS's {what} is not a JSON object.")
    return data


def _exchange(method: str, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
    deadline = time.monotonic() + FETCH_SECONDS
    try:
        with requests.request(
            method, url, timeout=(5, 10), allow_redirects=False, stream=True, **kwargs
        ) as response:
            status = response.status_code
            if 300 <= status < 400:
                raise RegistrationRefused(
                    f"The LMS redirected the {what} request ({url[:200]}); redirects are not "
                    "followed: give the final URL.",
                    code="platform_refused",
                )
            if status not in (200, 201):
                text = _read_body(response, what, deadline)[:300].decode("utf-8", "replace")
                raise RegistrationRefused(
                    f"The LMS answered {status} to the {what} request ({url[:200]}): {text!r}",
                    code="platform_refused",
                )
            return _read_json(response, what, deadline)
    except requests.RequestException as exc:
        raise RegistrationRefused(
            f"The LMS could not be reached for its {what} ({url[:200]}): {type(exc).__name__}.",
            code="platform_unreachable",
        ) from exc


# -- the platform's configuration and the tool's registration ---------------------------------
@dataclass(frozen=True)
class PlatformConfiguration:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    registration_endpoint: str
    authorization_server: str | None
    product_family_code: str | None
    scopes: list[str]
    deep_linking: bool


def _supports(config: dict[str, Any], key: str, needed: str) -> bool:
    offered = config.get(key)
    return not isinstance(offered, list) or needed in offered


def parse_configuration(config: dict[str, Any], config_url: str) -> PlatformConfiguration:
    """Check the platform's OpenID configuration (issuer, endpoints, what it supports)."""
    issuer = config.get("issuer")
    if not isinstance(issuer, str) or not issuer or len(issuer) > MAX_ID:
        raise RegistrationRefused("The LMS's OpenID configuration names no issuer.")
    checked_url(issuer, "issuer")
    if not issuer_matches(issuer, config_url):
        raise RegistrationRefused(
            f"The LMS's OpenID configuration claims the issuer {issuer[:200]!r}, which is not a "
            f"prefix of where it was read ({config_url[:200]}). A configuration may only speak for "
            "its own site, so nothing was registered. Register this LMS with `lti-exchange "
            "platform add` instead, using the values from its administration pages.",
            code="issuer_mismatch",
        )
    urls = {
        key: checked_url(config.get(key), key)
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "registration_endpoint")
    }
    needs = (
        ("token_endpoint_auth_methods_supported", "private_key_jwt"),
        ("id_token_signing_alg_values_supported", "RS256"),
        ("response_types_supported", "id_token"),
    )
    for key, needed in needs:
        if not _supports(config, key, needed):
            raise RegistrationRefused(
                f"The LMS does not support {needed} ({key}), which this tool needs.",
                code="platform_unsupported",
            )
    platform = config.get(PLATFORM_CONFIG)
    platform = platform if isinstance(platform, dict) else {}
    messages = platform.get("messages_supported")
    types = (
        {m.get("type") for m in messages if isinstance(m, dict)}
        if isinstance(messages, list)
        else {RESOURCE_LINK, DEEP_LINKING}
    )
    if RESOURCE_LINK not in types:
        raise RegistrationRefused(
            "The LMS does not support resource-link launches (LtiResourceLinkRequest).",
            code="platform_unsupported",
        )
    offered = config.get("scopes_supported")
    scopes = [s for s in SCOPES if not isinstance(offered, list) or s in offered]
    audience = config.get("authorization_server")
    family = platform.get("product_family_code")
    return PlatformConfiguration(
        issuer=issuer,
        authorization_server=audience if isinstance(audience, str) and audience else None,
        product_family_code=family[:50] if isinstance(family, str) and family else None,
        scopes=scopes,
        deep_linking=DEEP_LINKING in types,
        **urls,
    )


def tool_registration(base_url: str, platform: PlatformConfiguration) -> dict[str, Any]:
    """The OpenID client registration this tool sends (LTI-DR 1.0 §3.6)."""
    base = base_url.rstrip("/")
    launch = base + "/lti/launch"
    messages: list[dict[str, Any]] = [{"type": RESOURCE_LINK, "target_link_uri": launch}]
    if platform.deep_linking:
        messages.append(
            {"type": DEEP_LINKING, "target_link_uri": launch, "label": "nbgrader assignment"}
        )
    return {
        "application_type": "web",
        "response_types": ["id_token"],
        "grant_types": ["implicit", "client_credentials"],
        "initiate_login_uri": base + "/lti/login",
        "redirect_uris": [launch],
        "client_name": "nbgrader exchange",
        "jwks_uri": base + "/lti/jwks",
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": " ".join(platform.scopes),
        TOOL_CONFIG: {
            "domain": urlsplit(base).netloc,
            "target_link_uri": launch,
            "description": "Jupyter notebook assignments with nbgrader: release, submit, feedback.",
            "claims": CLAIMS,
            "messages": messages,
            "custom_parameters": CUSTOM_PARAMETERS,
        },
    }


@dataclass(frozen=True)
class RegisteredPlatform:
    org_id: int
    name: str
    issuer: str
    client_id: str
    deployment_id: str | None


def _org_name(session: Session, wanted: str, client_id: str) -> str:
    for name in (wanted, f"{wanted} ({client_id})", f"{wanted} ({secrets.token_hex(4)})"):
        name = name[:200]
        taken = session.execute(select(Organisation.id).where(Organisation.name == name)).first()
        if taken is None:
            return name
    raise RegistrationRefused("Could not choose a free organisation name; use --name.")


def _answer_ids(answer: dict[str, Any]) -> tuple[str, str | None]:
    client_id = answer.get("client_id")
    if not isinstance(client_id, str) or not client_id or len(client_id) > MAX_ID:
        raise RegistrationRefused(
            "The LMS accepted the registration but sent no usable client_id.",
            code="platform_refused",
        )
    tool = answer.get(TOOL_CONFIG)
    deployment = tool.get("deployment_id") if isinstance(tool, dict) else None
    if deployment is not None and (
        not isinstance(deployment, str) or not deployment or len(deployment) > MAX_ID
    ):
        raise RegistrationRefused(
            "The LMS sent an unusable deployment_id.", code="platform_refused"
        )
    return client_id, deployment


def register_platform(
    sessions: sessionmaker[Session],
    store: DatabaseStore,
    base_url: str,
    *,
    invite: str | None,
    openid_configuration: str | None,
    registration_token: str | None,
) -> RegisteredPlatform:
    """The whole tool side of one Dynamic Registration; raises ``RegistrationRefused`` with a
    message for the administrator, having registered nothing."""
    if not invite or len(invite) > 200:
        raise RegistrationRefused(
            "This page registers an LMS only through a one-time URL that the exchange's "
            "administrator makes with `lti-exchange platform invite`; this request has none, so "
            "nothing was registered.",
            status=403,
            code="invitation_missing",
        )
    if not openid_configuration:
        raise RegistrationRefused(
            "The LMS did not send openid_configuration. Paste this URL into the LMS's tool "
            "registration page (LTI Advantage / Dynamic Registration) rather than opening it "
            "in a browser; the invitation is still valid.",
            code="openid_configuration_missing",
        )
    config_url = checked_url(openid_configuration, "openid_configuration URL")
    if registration_token is not None and len(registration_token) > MAX_REGISTRATION_TOKEN:
        raise RegistrationRefused("The LMS's registration_token is too long.")
    invitation = _consume_invitation(store, invite)
    accept = {"Accept": "application/json"}
    document = _exchange("GET", config_url, "OpenID configuration", headers=accept)
    platform = parse_configuration(document, config_url)
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if registration_token:
        headers["Authorization"] = f"Bearer {registration_token}"
    answer = _exchange(
        "POST",
        platform.registration_endpoint,
        "registration",
        data=json.dumps(tool_registration(base_url, platform)),
        headers=headers,
    )
    client_id, deployment_id = _answer_ids(answer)
    with sessions() as session:
        exists = session.execute(
            select(LtiRegistration.id).where(
                LtiRegistration.issuer == platform.issuer, LtiRegistration.client_id == client_id
            )
        ).first()
        if exists is not None:
            raise RegistrationRefused(
                f"{platform.issuer} (client {client_id}) is already registered here; nothing was "
                "changed. `lti-exchange platform list` shows it.",
                status=409,
                code="already_registered",
            )
        family = platform.product_family_code or "LMS"
        wanted = invitation.get("name") or f"{family} {platform.issuer}"
        row = upsert_registration(
            session,
            RegistrationInput(
                issuer=platform.issuer,
                client_id=client_id,
                deployment_ids=[deployment_id] if deployment_id else [],
                auth_login_url=platform.authorization_endpoint,
                auth_token_url=platform.token_endpoint,
                key_set_url=platform.jwks_uri,
                auth_audience=platform.authorization_server,
                name=_org_name(session, str(wanted), client_id),
            ),
        )
        session.commit()
        return RegisteredPlatform(
            org_id=row.org_id,
            name=row.organisation_name,  # type: ignore[attr-defined]
            issuer=platform.issuer,
            client_id=client_id,
            deployment_id=deployment_id,
        )
