"""A simulated LMS: an LTI 1.3 platform of our own, served over HTTP on a loopback port.

What it does, as Moodle, Canvas, Blackboard or Brightspace would:

- keeps its own RSA keys (each with a ``kid``) and publishes the public halves as a JWKS at
  ``/jwks``; ``rotate_key()`` adds a new key to the JWKS and signs with it from then on;
- answers the tool's OIDC authentication request at ``/auth`` (the ``auth_login_url``): it checks
  every parameter of the redirect (``scope``, ``response_type``, ``response_mode``, ``prompt``,
  ``client_id``, ``redirect_uri``, ``login_hint`` and ``lti_message_hint`` echoed, ``state`` and
  ``nonce`` present) and answers 400 naming what is wrong; otherwise it builds a realistic claim
  set, applies the launch's mutation hook, signs it (or forges it: no ``kid``, a wrong ``kid``, an
  attacker's key, ``alg: none``, HS256 keyed with the platform's public key PEM) and answers with
  the auto-submitting ``id_token`` + ``state`` form;
- receives Deep Linking responses at ``/deep_link_return`` and checks them against the tool's JWKS;
- issues OAuth2 access tokens at ``/token`` (client credentials with a JWT client assertion checked
  against the tool's ``/lti/jwks``) and serves AGS (line items, scores, results) under
  ``/api/ags/<context id>/`` and NRPS memberships under ``/api/nrps/<context id>/``, recording
  every request; see ``tests/lms/services.py`` for the checks, accessors and fault switches.

``launch()`` drives a whole launch the way a browser does: third-party login at the tool's
``/lti/login`` → the tool's redirect to ``/auth`` → the form POST to the tool's ``/lti/launch``.

Launches feed the services: everyone who launched in a context is a member of its NRPS roster
(with the launch roles), and the launch's resource link is a valid ``resourceLinkId`` there.
A deep-linking response adds its links (with their custom parameters) to the context and, for a
link with a ``lineItem``, the column (coupled grading); launches of such a link carry its
``lineitem`` (see ``services.py``: ``add_link``, ``offer_ags``, ``ags_claim``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, request

from tests.lms.services import PlatformServices
from tests.lms.serving import BackgroundServer

# --- claim names and role URIs ----------------------------------------------------------------
LTI = "https://purl.imsglobal.org/spec/lti/claim/"
CLAIM_VERSION = LTI + "version"
CLAIM_MESSAGE_TYPE = LTI + "message_type"
CLAIM_DEPLOYMENT_ID = LTI + "deployment_id"
CLAIM_TARGET_LINK_URI = LTI + "target_link_uri"
CLAIM_RESOURCE_LINK = LTI + "resource_link"
CLAIM_ROLES = LTI + "roles"
CLAIM_CONTEXT = LTI + "context"
CLAIM_TOOL_PLATFORM = LTI + "tool_platform"
CLAIM_LAUNCH_PRESENTATION = LTI + "launch_presentation"
CLAIM_CUSTOM = LTI + "custom"
CLAIM_LIS = LTI + "lis"
CLAIM_AGS = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
CLAIM_NRPS = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
CLAIM_DL_SETTINGS = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
CLAIM_DL_CONTENT_ITEMS = "https://purl.imsglobal.org/spec/lti-dl/claim/content_items"
CLAIM_DL_DATA = "https://purl.imsglobal.org/spec/lti-dl/claim/data"

MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
INSTRUCTOR = MEMBERSHIP + "Instructor"
LEARNER = MEMBERSHIP + "Learner"
MENTOR = MEMBERSHIP + "Mentor"
CONTENT_DEVELOPER = MEMBERSHIP + "ContentDeveloper"
CONTEXT_ADMIN = MEMBERSHIP + "Administrator"
TEACHING_ASSISTANT = (
    "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"
)
SYSTEM_ADMIN = "http://purl.imsglobal.org/vocab/lis/v2/system/person#Administrator"
SYSTEM_USER = "http://purl.imsglobal.org/vocab/lis/v2/system/person#User"
INSTITUTION_ADMIN = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"
INSTITUTION_FACULTY = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Faculty"
INSTITUTION_STUDENT = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Student"
INSTITUTION_MENTOR = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Mentor"
TEST_USER = "http://purl.imsglobal.org/vocab/lti/system/person#TestUser"
UNKNOWN_ROLE = (
    "http://purl.imsglobal.org/vocab/lis/v2/uknownrole/unknown#Unknown"  # sic, as 1EdTech
)

COURSE_OFFERING = "http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering"
AGS_SCOPES = [
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
]

ACCEPT_JSON = "application/json"
ACCEPT_BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

# Header forgeries (``header=`` of ``launch``); a callable taking and returning the header dict
# is accepted as well (the token is then RS256-signed with the current key).
HEADER_MODES = ("no_kid", "wrong_kid", "attacker_key", "alg_none", "hs256_public_key")
WRONG_KID = "imstester_66067"  # the value the 1EdTech certification suite uses


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_b64(value: dict) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "use the default", where None means "leave it out"


# --- people and courses ------------------------------------------------------------------------
@dataclass
class LmsUser:
    """A person in the LMS. ``None`` fields are not sent."""

    sub: str
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    email: str | None = None
    preferred_username: str | None = None
    person_sourcedid: str | None = None

    @classmethod
    def make(cls, first: str = "Alex", last: str = "Example", **overrides: Any) -> LmsUser:
        """A realistic user with a unique ``sub`` and a unique email address."""
        tag = _tag()
        values: dict[str, Any] = {
            "sub": str(uuid.uuid4()),
            "name": f"{first} {last}",
            "given_name": first,
            "family_name": last,
            "email": f"{first.lower()}.{last.lower()}.{tag}@example.edu",
            "person_sourcedid": f"sis-{tag}",
        }
        values.update(overrides)
        return cls(**values)

    def claims(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sub": self.sub}
        for key in ("name", "given_name", "family_name", "email", "preferred_username"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass
class LmsContext:
    """A course (LTI context)."""

    id: str
    label: str
    title: str
    type: list[str] = field(default_factory=lambda: [COURSE_OFFERING])

    @classmethod
    def make(cls, label: str | None = None, title: str | None = None) -> LmsContext:
        tag = _tag()
        label = label or f"CS101-{tag}"
        return cls(id=f"ctx-{tag}", label=label, title=title or f"Introduction to {label}")

    def claim(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "title": self.title, "type": list(self.type)}


# --- one launch --------------------------------------------------------------------------------
@dataclass
class LaunchRecord:
    """Everything about one launch, attached to the final response as ``response.lti``."""

    login_params: dict[str, str]
    login_response: requests.Response | None = None
    auth_params: dict[str, str] | None = None
    claims: Any = None
    header: dict[str, Any] | None = None
    id_token: str | None = None
    form_action: str | None = None
    form_fields: dict[str, str] | None = None
    accept_json: bool = True
    first_response: requests.Response | None = None  # set when the launch was replayed

    @property
    def nonce(self) -> str | None:
        return (self.auth_params or {}).get("nonce")

    @property
    def state(self) -> str | None:
        return (self.auth_params or {}).get("state")


@dataclass
class _Pending:
    """What the platform will put in the id_token when the tool's redirect arrives."""

    client_id: str
    deployment_id: str
    user: LmsUser
    roles: list[str] | None
    context: LmsContext | None
    custom: dict[str, str] | None
    message_type: str
    resource_link: dict[str, Any] | None
    deep_linking: dict[str, Any] | None
    target_link_uri: str
    lti_message_hint: str | None
    mutate: Callable[[dict], Any] | None
    header: str | Callable[[dict], dict] | None
    record: LaunchRecord


class _FormParser(HTMLParser):
    """The first ``<form>`` of a page: its method, action and input fields."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                {
                    "method": values.get("method", "get"),
                    "action": values.get("action", ""),
                    "fields": {},
                }
            )
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1]["fields"][values["name"]] = values.get("value", "")


def parse_form(page: str) -> dict[str, Any]:
    """The first form of an HTML page (``method``, ``action``, ``fields``)."""
    parser = _FormParser()
    parser.feed(page)
    assert parser.forms, f"no <form> in the page:\n{page[:2000]}"
    return parser.forms[0]


# --- the platform ------------------------------------------------------------------------------
class SimulatedPlatform(PlatformServices):
    """One LMS (one issuer) with one or more tool registrations (client ids) and deployments.

    ``tool_url`` is the tool's base URL (``LTI_EXCHANGE_BASE_URL``); the platform expects the
    tool's ``redirect_uri`` to be ``<tool_url>/lti/launch``.
    """

    def __init__(
        self,
        tool_url: str,
        *,
        issuer: str | None = None,
        client_id: str | None = None,
        deployment_ids: tuple[str, ...] | list[str] = ("1", "2"),
        name: str = "Simulated Moodle",
        product_family_code: str = "moodle",
    ) -> None:
        tag = _tag()
        self.tool_url = tool_url.rstrip("/")
        self.issuer = issuer or f"https://lms-{tag}.example.edu"
        self.client_id = client_id or f"client-{tag}"
        self.name = name
        self.product_family_code = product_family_code
        self.guid = f"platform-{tag}"
        # client_id -> the deployment ids the platform has for it
        self.clients: dict[str, list[str]] = {self.client_id: list(deployment_ids)}
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []
        self.signing_kid = self._new_key()
        self.attacker_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwks_requests = 0
        self.jwks_max_age = 3600
        self.auth_requests: list[dict[str, str]] = []
        self.problems: list[str] = []
        self.deep_link_responses: list[dict[str, Any]] = []
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._server: BackgroundServer | None = None
        self.url = ""
        self._init_services()
        self.app = self._build_app()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> SimulatedPlatform:
        self._server = BackgroundServer(self.app, name=f"lms-{self.issuer}")
        self.url = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> SimulatedPlatform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def auth_login_url(self) -> str:
        return self.url + "/auth"

    @property
    def auth_token_url(self) -> str:
        return self.url + "/token"

    @property
    def key_set_url(self) -> str:
        return self.url + "/jwks"

    @property
    def deep_link_return_url(self) -> str:
        return self.url + "/deep_link_return"

    @property
    def redirect_uri(self) -> str:
        return self.tool_url + "/lti/launch"

    @property
    def default_target_link_uri(self) -> str:
        return self.tool_url + "/lti/launch"

    def add_client(self, client_id: str | None = None, deployment_ids=("1",)) -> str:
        """Another registration of the tool on this issuer (as Canvas and Blackboard do)."""
        client_id = client_id or f"client-{_tag()}"
        self.clients[client_id] = list(deployment_ids)
        return client_id

    # -- keys --------------------------------------------------------------------------------
    def _new_key(self) -> str:
        kid = f"kid-{_tag()}"
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.published.append(kid)
        return kid

    def rotate_key(self) -> str:
        """Publish a new key (the old one stays published) and sign with it from now on."""
        self.signing_kid = self._new_key()
        return self.signing_kid

    def public_pem(self, kid: str | None = None) -> bytes:
        return (
            self.keys[kid or self.signing_kid]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
            keys.append(jwk)
        return {"keys": keys}

    def sign(self, claims: Any, header: str | Callable[[dict], dict] | None = None) -> str:
        """Sign ``claims`` as this platform would, or forge the token as ``header`` says."""
        kid = self.signing_kid
        if header is None:
            return jwt.encode(claims, self.keys[kid], algorithm="RS256", headers={"kid": kid})
        if callable(header):
            fields = header({"alg": "RS256", "typ": "JWT", "kid": kid})
            signing_input = f"{_json_b64(fields)}.{_json_b64(claims)}".encode()
            signature = self.keys[kid].sign(signing_input, *_rs256())
            return f"{signing_input.decode()}.{_b64url(signature)}"
        if header == "no_kid":
            return jwt.encode(claims, self.keys[kid], algorithm="RS256")
        if header == "wrong_kid":
            return jwt.encode(claims, self.keys[kid], algorithm="RS256", headers={"kid": WRONG_KID})
        if header == "attacker_key":  # the platform's kid, someone else's key
            return jwt.encode(claims, self.attacker_key, algorithm="RS256", headers={"kid": kid})
        if header == "alg_none":
            return f"{_json_b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{_json_b64(claims)}."
        if header == "hs256_public_key":  # algorithm confusion: the public PEM as HMAC secret
            signing_input = (
                f"{_json_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_json_b64(claims)}"
            )
            mac = hmac.new(self.public_pem(kid), signing_input.encode(), hashlib.sha256).digest()
            return f"{signing_input}.{_b64url(mac)}"
        raise ValueError(f"unknown header mode {header!r}; use one of {HEADER_MODES}")

    # -- claims ------------------------------------------------------------------------------
    def build_claims(self, pending: _Pending, nonce: str) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": pending.client_id,
            "azp": pending.client_id,
            "exp": now + 300,
            "iat": now,
            "nonce": nonce,
            **pending.user.claims(),
            "locale": "en",
            CLAIM_VERSION: "1.3.0",
            CLAIM_MESSAGE_TYPE: pending.message_type,
            CLAIM_DEPLOYMENT_ID: pending.deployment_id,
            CLAIM_TARGET_LINK_URI: pending.target_link_uri,
            CLAIM_TOOL_PLATFORM: {
                "guid": self.guid,
                "name": self.name,
                "version": "4.3",
                "product_family_code": self.product_family_code,
                "url": self.url,
                "contact_email": "admin@example.edu",
            },
            CLAIM_LAUNCH_PRESENTATION: {
                "document_target": "iframe",
                "return_url": self.url + "/return",
                "locale": "en",
            },
        }
        if pending.roles is not None:
            claims[CLAIM_ROLES] = list(pending.roles)
        if pending.message_type == "LtiResourceLinkRequest":
            claims[CLAIM_RESOURCE_LINK] = pending.resource_link or {
                "id": f"rl-{_tag()}",
                "title": "Problem set 1",
                "description": "The first problem set",
            }
        if pending.deep_linking is not None:
            claims[CLAIM_DL_SETTINGS] = pending.deep_linking
            self._note_deep_linking(pending.context, pending.deep_linking)
        lis: dict[str, str] = {}
        if pending.user.person_sourcedid is not None:
            lis["person_sourcedid"] = pending.user.person_sourcedid
        context = pending.context
        if context is not None:
            claims[CLAIM_CONTEXT] = context.claim()
            lis["course_offering_sourcedid"] = f"sis-course-{context.id}"
            lis["course_section_sourcedid"] = f"sis-section-{context.id}"
            ags = self.ags_claim(context, claims.get(CLAIM_RESOURCE_LINK))
            if ags is not None:
                claims[CLAIM_AGS] = ags
            claims[CLAIM_NRPS] = {
                "context_memberships_url": f"{self.url}/api/nrps/{context.id}/memberships",
                "service_versions": ["2.0"],
            }
        if lis:
            claims[CLAIM_LIS] = lis
        custom = pending.custom
        if custom is None and pending.message_type == "LtiResourceLinkRequest":
            custom = self.link_custom(context, claims[CLAIM_RESOURCE_LINK]["id"])
        if custom is not None:
            claims[CLAIM_CUSTOM] = dict(custom)
        self._note_launch(context, pending.user, pending.roles, claims.get(CLAIM_RESOURCE_LINK))
        if pending.mutate is not None:
            claims = pending.mutate(claims)
        return claims

    @staticmethod
    def deep_linking_settings(
        return_url: str, *, data: str | None = "opaque-123", **overrides: Any
    ) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "deep_link_return_url": return_url,
            "accept_types": ["ltiResourceLink"],
            "accept_presentation_document_targets": ["iframe", "window"],
            "accept_multiple": False,
            "auto_create": True,
            "title": "Choose an nbgrader assignment",
        }
        if data is not None:
            settings["data"] = data
        settings.update(overrides)
        return settings

    # -- the HTTP side -----------------------------------------------------------------------
    def _build_app(self) -> Flask:
        app = Flask(f"simulated-lms-{id(self)}")

        @app.get("/jwks")
        def jwks() -> Response:
            with self._lock:
                self.jwks_requests += 1
            answer = Response(json.dumps(self.jwks()), mimetype="application/json")
            answer.headers["Cache-Control"] = f"max-age={self.jwks_max_age}"
            return answer

        @app.route("/auth", methods=["GET", "POST"])
        def auth() -> Response:
            params = {k: v for k, v in request.values.items()}
            multi = {k: len(request.values.getlist(k)) for k in request.values}
            with self._lock:
                self.auth_requests.append(params)
            problems, pending = self._check_auth_request(params, multi)
            if problems:
                with self._lock:
                    self.problems.extend(problems)
                return Response(
                    "The platform refuses the authentication request: " + "; ".join(problems),
                    status=400,
                    mimetype="text/plain",
                )
            assert pending is not None
            claims = self.build_claims(pending, params["nonce"])
            id_token = self.sign(claims, pending.header)
            record = pending.record
            record.auth_params = params
            record.claims = claims
            record.id_token = id_token
            try:
                record.header = jwt.get_unverified_header(id_token)
            except jwt.InvalidTokenError:
                record.header = None
            return Response(
                self.auto_submit_form(params["redirect_uri"], id_token, params["state"]),
                mimetype="text/html",
            )

        @app.post("/deep_link_return")
        def deep_link_return() -> Response:
            token = request.form.get("JWT", "")
            try:
                claims = self.verify_deep_link_response(token)
            except Exception as exc:  # noqa: BLE001 - report any failure to the test
                return Response(f"invalid deep linking response: {exc}", status=400)
            with self._lock:
                self.deep_link_responses.append(claims)
            try:  # as an LMS does: add the links, and the columns of those with a lineItem
                self._add_deep_linked_links(claims)
            except ValueError as exc:
                return Response(f"unusable content item: {exc}", status=400)
            return Response("deep linking response received", mimetype="text/plain")

        @app.get("/return")
        def launch_return() -> Response:
            return Response("back in the LMS", mimetype="text/plain")

        # --- services: /token, /api/ags/…, /api/nrps/… (tests/lms/services.py) -------------
        self._add_service_routes(app)
        return app

    def _check_auth_request(
        self, params: dict[str, str], multi: dict[str, int]
    ) -> tuple[list[str], _Pending | None]:
        problems = [f"{k} given {n} times" for k, n in multi.items() if n > 1]
        expected = {
            "scope": "openid",
            "response_type": "id_token",
            "response_mode": "form_post",
            "prompt": "none",
        }
        for key, value in expected.items():
            if params.get(key) != value:
                problems.append(f"{key} must be {value!r}, got {params.get(key)!r}")
        client_id = params.get("client_id")
        if client_id not in self.clients:
            problems.append(f"client_id {client_id!r} is not registered on this platform")
        if params.get("redirect_uri") != self.redirect_uri:
            problems.append(
                f"redirect_uri must be {self.redirect_uri!r}, got {params.get('redirect_uri')!r}"
            )
        for key in ("state", "nonce"):
            if not params.get(key):
                problems.append(f"{key} is missing")
        with self._lock:
            pending = self._pending.get(params.get("login_hint", ""))
        if pending is None:
            problems.append(f"login_hint {params.get('login_hint')!r} was not issued by us")
            return problems, None
        if client_id in self.clients and client_id != pending.client_id:
            problems.append(f"client_id {client_id!r} is not the one of this login")
        if params.get("lti_message_hint") != pending.lti_message_hint:
            problems.append(
                f"lti_message_hint must be echoed unchanged: sent {pending.lti_message_hint!r}, "
                f"got {params.get('lti_message_hint')!r}"
            )
        return problems, pending

    @staticmethod
    def auto_submit_form(action: str, id_token: str, state: str) -> str:
        return (
            "<!DOCTYPE html>\n<html><head><title>Launching…</title></head>\n"
            '<body onload="document.forms[0].submit()">\n'
            f'<form method="post" action="{html.escape(action)}">\n'
            f'<input type="hidden" name="id_token" value="{html.escape(id_token)}">\n'
            f'<input type="hidden" name="state" value="{html.escape(state)}">\n'
            '<noscript><button type="submit">Continue</button></noscript>\n'
            "</form></body></html>\n"
        )

    # -- deep linking: what the platform checks ----------------------------------------------
    def verify_deep_link_response(
        self, token: str, *, client_id: str | None = None, jwks_url: str | None = None
    ) -> dict[str, Any]:
        """Verify a tool's LtiDeepLinkingResponse JWT as an LMS does; return its claims."""
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "RS256":
            raise ValueError(f"alg must be RS256, got {header.get('alg')!r}")
        kid = header.get("kid")
        if not kid:
            raise ValueError("no kid in the header")
        keys = requests.get(jwks_url or self.tool_url + "/lti/jwks", timeout=30).json()["keys"]
        match = [k for k in keys if k.get("kid") == kid]
        if len(match) != 1:
            raise ValueError(f"kid {kid!r} is not (exactly once) in the tool's JWKS")
        key = jwt.PyJWK(match[0], algorithm="RS256")
        return jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=self.issuer,
            issuer=client_id or self.client_id,
            options={"require": ["iss", "aud", "exp", "iat", "nonce"]},
        )

    # -- driving a launch like a browser -----------------------------------------------------
    def launch(
        self,
        session: requests.Session,
        tool_url: str | None = None,
        *,
        user: LmsUser | None = None,
        roles: list[str] | tuple[str, ...] | None = (LEARNER,),
        context: LmsContext | None = UNSET,
        custom: dict[str, str] | None = None,
        message_type: str = "LtiResourceLinkRequest",
        deep_linking: dict[str, Any] | None = None,
        resource_link: dict[str, Any] | None = None,
        client_id: str | None = None,
        deployment_id: str | None = None,
        target_link_uri: str | None = None,
        lti_message_hint: str | None = UNSET,
        login: dict[str, str | None] | None = None,
        login_method: str = "GET",
        mutate: Callable[[dict], Any] | None = None,
        header: str | Callable[[dict], dict] | None = None,
        form: dict[str, str | Callable[[str | None], str] | None] | None = None,
        accept_json: bool = True,
        replay: bool = False,
    ) -> requests.Response:
        """One launch: login at the tool → the tool's redirect here → form POST to the tool.

        Returns the tool's last answer (the login's answer when it did not redirect to us),
        with ``.lti`` (a ``LaunchRecord``) attached. ``roles=None`` sends no roles claim;
        ``context=None`` no context; ``login`` overrides login parameters (``None`` removes
        one); ``form`` overrides the fields posted to the tool (a value, ``None`` to remove
        it, or a callable taking the platform's value: tampering in transit); ``replay`` posts
        the same form a second time and returns that answer (the first is
        ``.lti.first_response``).
        """
        tool = (tool_url or self.tool_url).rstrip("/")
        client_id = client_id or self.client_id
        deployment_id = deployment_id or self.clients.get(client_id, ["1"])[0]
        if context is UNSET:
            context = LmsContext.make()
        if lti_message_hint is UNSET:
            lti_message_hint = f"msg-{uuid.uuid4().hex}"
        login_hint = f"user-{uuid.uuid4().hex}"
        target = target_link_uri or self.default_target_link_uri
        params: dict[str, str | None] = {
            "iss": self.issuer,
            "login_hint": login_hint,
            "target_link_uri": target,
            "lti_message_hint": lti_message_hint,
            "client_id": client_id,
            "lti_deployment_id": deployment_id,
        }
        params.update(login or {})
        sent = {k: v for k, v in params.items() if v is not None}
        record = LaunchRecord(login_params=sent, accept_json=accept_json)
        pending = _Pending(
            client_id=client_id,
            deployment_id=deployment_id,
            user=user or LmsUser.make(),
            roles=None if roles is None else list(roles),
            context=context,
            custom=custom,
            message_type=message_type,
            resource_link=resource_link,
            deep_linking=deep_linking,
            # the signed claim repeats what the platform put in the login
            target_link_uri=target,
            lti_message_hint=lti_message_hint,
            mutate=mutate,
            header=header,
            record=record,
        )
        with self._lock:
            self._pending[login_hint] = pending

        headers = {"Accept": ACCEPT_BROWSER}
        if login_method.upper() == "GET":
            answer = session.get(
                tool + "/lti/login", params=sent, headers=headers, allow_redirects=False, timeout=60
            )
        else:
            answer = session.post(
                tool + "/lti/login", data=sent, headers=headers, allow_redirects=False, timeout=60
            )
        record.login_response = answer
        if answer.status_code not in (301, 302, 303, 307):
            answer.lti = record
            return answer
        location = answer.headers.get("Location", "")
        parts = urlsplit(location)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == self.auth_login_url, (
            f"the tool redirected the login to {location!r}, not to {self.auth_login_url!r}"
        )
        query = parse_qs(parts.query)
        assert all(len(v) == 1 for v in query.values()), f"repeated parameters: {location}"
        platform_page = session.get(location, headers=headers, allow_redirects=False, timeout=60)
        assert platform_page.status_code == 200, (
            f"the platform refused the tool's authentication request "
            f"({platform_page.status_code}): {platform_page.text}"
        )
        page_form = parse_form(platform_page.text)
        assert page_form["method"].lower() == "post", page_form
        fields = dict(page_form["fields"])
        for key, value in (form or {}).items():
            if callable(value):
                fields[key] = value(fields.get(key))
            elif value is None:
                fields.pop(key, None)
            else:
                fields[key] = value
        record.form_action = page_form["action"]
        record.form_fields = fields
        final = self.post_form(session, record, accept_json=accept_json)
        if replay:
            record.first_response = final
            final = self.post_form(session, record, accept_json=accept_json)
        final.lti = record
        return final

    @staticmethod
    def post_form(
        session: requests.Session, record: LaunchRecord, *, accept_json: bool = True
    ) -> requests.Response:
        """POST the platform's form (``id_token`` + ``state``) to the tool, as the browser does."""
        assert record.form_action and record.form_fields is not None, "no form to post"
        headers = {"Accept": ACCEPT_JSON if accept_json else ACCEPT_BROWSER}
        answer = session.post(
            record.form_action, data=record.form_fields, headers=headers, timeout=60
        )
        answer.lti = record
        return answer


def _rs256() -> tuple:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.PKCS1v15(), hashes.SHA256()
