"""An LTI 1.3 platform built on ``lti1p3platform`` (PyPI; an independent implementation we did
not write), served over HTTP on a loopback port, to check the tool against someone else's reading
of the specifications.

What the library does here (its own code, unchanged):

- the registration and platform keys (``Registration``), the platform JWKS (``get_jwks``);
- the third-party login URL (``OIDCLoginAbstract.prepare_preflight_url``), the check of the tool's
  authentication request (``validate_preflight_response``), the launch message with its claims
  (user, roles, context, resource link, custom, AGS, NRPS, deep-linking settings) and its RS256
  signature (``LTIAdvantageMessageLaunchAbstract``), the auto-submitting launch form (its Jinja
  template);
- the token endpoint: the tool's client assertion checked against the tool's JWKS, the access
  token minted (``get_access_token``), and every service call's bearer token checked
  (``validate_token`` in ``authenticate``);
- the AGS and NRPS request handling and paging (``AssignmentsGradesService``,
  ``NamesRoleProvisioningService``), deep-linking response verification against the tool's JWKS
  (``validate_deeplinking_resp``).

The glue here is what the library leaves to its host framework: a Flask request/response adapter
(the library ships Django and FastAPI ones), the storage behind its abstract AGS/NRPS methods, the
routes, and the few checks a platform makes that the library does not (the login hint and the
redirect URI of the authentication request; ``iss``/``sub``/``aud`` of the client assertion).
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask import Response as FlaskResponse
from flask import request as flask_request
from jinja2 import Environment, PackageLoader
from lti1p3platform.exceptions import (
    LineItemNotFoundException,
    LtiDeepLinkingResponseException,
    LtiException,
    MissingRequiredClaim,
    PreflightRequestValidationException,
    UnsupportedGrantType,
)
from lti1p3platform.lineitem import TLineItem
from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
from lti1p3platform.membership import Context
from lti1p3platform.message_launch import LaunchData, LTIAdvantageMessageLaunchAbstract
from lti1p3platform.oidc_login import OIDCLoginAbstract
from lti1p3platform.registration import Registration
from lti1p3platform.request import Request, TRequest
from lti1p3platform.response import Response as LibResponse
from lti1p3platform.response import generate_next_link
from lti1p3platform.score import TScore, UpdateScoreStatus
from lti1p3platform.service_connector import (
    AssignmentsGradesService,
    NamesRoleProvisioningService,
    TPage,
)

from tests.lms.platform import ACCEPT_BROWSER, ACCEPT_JSON, parse_form
from tests.lms.serving import BackgroundServer

MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
INSTRUCTOR = MEMBERSHIP + "Instructor"
LEARNER = MEMBERSHIP + "Learner"
INT_PARAMS = ("page", "limit")  # the library adds 1 to ``page``: it must arrive as an int
# The library's own launch form (``lti1p3platform/framework/templates/launch.html``), loaded as
# its ``framework.templates`` module does (plus autoescaping), without that module's unused
# ``import pkg_resources`` (setuptools is absent from Python 3.12+ virtual environments).
LAUNCH_FORM = Environment(
    loader=PackageLoader("lti1p3platform.framework", package_path="templates"), autoescape=True
).get_template("launch.html")


def _tag() -> str:
    return uuid.uuid4().hex[:8]


@dataclass
class Person:
    sub: str
    name: str
    email: str

    @classmethod
    def make(cls, first: str, last: str) -> Person:
        tag = _tag()
        return cls(
            str(uuid.uuid4()), f"{first} {last}", f"{first}.{last}.{tag}@example.org".lower()
        )


@dataclass
class Course:
    id: str
    label: str
    title: str

    @classmethod
    def make(cls) -> Course:
        tag = _tag()
        return cls(f"ctx-{tag}", f"IX{tag}", f"Interop course {tag}")


@dataclass
class PendingLaunch:
    """What the platform will put into the launch when the tool's authentication request comes."""

    person: Person
    roles: list[str]
    course: Course
    resource_link: dict[str, str] | None
    custom: dict[str, str] | None
    lineitem_url: str | None
    offer_lineitems: bool
    nrps_page_size: int | None
    deep_linking: bool


@dataclass
class Recorded:
    """What the tool did at the platform (for the tests' assertions)."""

    launch_claims: list[dict[str, Any]] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    lineitem_posts: list[dict[str, Any]] = field(default_factory=list)
    score_posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    membership_requests: list[dict[str, Any]] = field(default_factory=list)
    deep_link_items: list[list[dict[str, Any]]] = field(default_factory=list)


# --- the Flask adapter the library leaves to its host (as its Django/FastAPI ones) -------------
class FlaskRequest(Request):
    def build_metadata(self, request: Any) -> TRequest:
        content_type = request.content_type or ""
        args = request.args.to_dict()
        for key in INT_PARAMS:
            if key in args and args[key].isdigit():
                args[key] = int(args[key])
        return {
            "method": request.method,
            "form_data": request.form.to_dict(),
            "json": request.get_json(silent=True) if "json" in content_type else None,
            "get_data": args,
            "headers": request.headers,
            "content_type": content_type,
            "path": request.path,
        }


def flask_response(resp: LibResponse) -> FlaskResponse:
    """The library's ``Response`` as Flask's (its Django ``wrap_json_resp``, for Flask)."""
    if 200 <= resp.code < 300:
        result = resp.result
        data = result["content"] if result and "content" in result else result
        answer = FlaskResponse(json.dumps(data), status=resp.code, mimetype=resp.media_type)
        if result and result.get("next"):
            answer.headers["Link"] = generate_next_link(result["next"])
        return answer
    return json_error(resp.code, resp.message)


def json_error(status: int, message: str, error: str = "invalid_request") -> FlaskResponse:
    body = {"error": error, "error_description": message}
    return FlaskResponse(json.dumps(body), status=status, mimetype="application/json")


# --- the library's abstract classes, made concrete ---------------------------------------------
class HarnessConf(LTI1P3PlatformConfAbstract):
    def init_platform_config(self, **kwargs: Any) -> None:
        self._the_registration: Registration = kwargs["registration"]

    def get_registration_by_params(self, **kwargs: Any) -> Registration:
        return self._the_registration


class HarnessLogin(OIDCLoginAbstract):
    def set_lti_message_hint(self, **kwargs: Any) -> None:
        self._lti_message_hint = kwargs["hint"]

    def get_redirect(self, url: str) -> str:
        return url


class HarnessLaunch(LTIAdvantageMessageLaunchAbstract):
    def __init__(self, request: Request, conf: HarnessConf, platform: LibraryPlatform) -> None:
        super().__init__(request, conf)
        self.platform = platform

    def prepare_launch(self, preflight_response: dict[str, Any]) -> None:
        pending = self.platform.take_pending(preflight_response.get("lti_message_hint", ""))
        registration = self._platform_config.get_registration()
        if (
            pending is None
            or preflight_response.get("login_hint") != pending.person.sub
            or preflight_response.get("redirect_uri") != registration.get_launch_url()
        ):
            raise PreflightRequestValidationException("unknown login or redirect_uri")
        person, course = pending.person, pending.course
        self.set_user_data(person.sub, pending.roles, person.name, person.email)
        self.set_launch_context_claim(course.id, None, course.title, course.label)
        if pending.resource_link:
            self.set_resource_link_claim(**pending.resource_link)
        if pending.custom:
            self.set_custom_parameters_claim(pending.custom)
        # Without ``lineitems`` the library offers the link's ``lineitem`` and, by its own rule,
        # no line-item scope (only result.readonly and score).
        lineitems = self.platform.lineitems_url(course.id) if pending.offer_lineitems else ""
        self.set_ags(lineitems, pending.lineitem_url)
        nrps_url = self.platform.memberships_url(course.id)
        if pending.nrps_page_size:
            nrps_url += f"?limit={pending.nrps_page_size}"
        self.set_nrps(nrps_url)
        if pending.deep_linking:
            self.set_dl(
                self.platform.url + "/deep_link_return",
                title="Choose an assignment",
                accept_types={"ltiResourceLink"},
                extra_data={"opaque": "interop-42"},
            )

    def generate_launch_request(self) -> LaunchData:
        signed = super().generate_launch_request()
        claims = jwt.decode(signed["id_token"], options={"verify_signature": False})
        with self.platform.lock:
            self.platform.recorded.launch_claims.append(claims)
        return signed

    def render_launch_form(self, launch_data: dict[str, Any], **kwargs: Any) -> str:
        return LAUNCH_FORM.render(launch_data)


class HarnessAgs(AssignmentsGradesService):
    """AGS over the platform's in-memory gradebook (one list of line items per context)."""

    def __init__(
        self, request: Request, conf: HarnessConf, platform: LibraryPlatform, context_id: str
    ) -> None:
        super().__init__(request, conf, platform.lineitems_url(context_id))
        self.platform, self.context_id = platform, context_id

    def _items(self) -> list[dict[str, Any]]:
        return self.platform.gradebook.setdefault(self.context_id, [])

    def _item(self, line_item_id: str) -> dict[str, Any]:
        url = f"{self.platform.lineitems_url(self.context_id)}/{line_item_id}"
        for item in self._items():
            if item["id"] == url:
                return item
        raise LineItemNotFoundException(url)

    def find_lineitems(
        self,
        page: int = 1,
        limit: int | None = None,
        line_item_id: str | None = None,
        resource_link_id: str | None = None,
        resource_id: str | None = None,
        tag: str | None = None,
    ) -> TPage:
        wanted = {"resourceLinkId": resource_link_id, "resourceId": resource_id, "tag": tag}
        with self.platform.lock:
            found = [
                dict(item)
                for item in self._items()
                if all(v is None or item.get(k) == v for k, v in wanted.items())
            ]
        if not limit:
            return {"content": found, "has_next": False}
        start = (page - 1) * limit
        return {"content": found[start : start + limit], "has_next": len(found) > start + limit}

    def find_lineitem(self, line_item_id: str) -> TLineItem:
        with self.platform.lock:
            return dict(self._item(line_item_id))  # type: ignore[return-value]

    def create_lineitem(self, creation_data: TLineItem) -> TLineItem:
        with self.platform.lock:
            self.platform.recorded.lineitem_posts.append(dict(creation_data))
        return self.platform.add_lineitem(self.context_id, dict(creation_data))  # type: ignore

    def update_lineitem(self, update_data: TLineItem) -> TLineItem:
        with self.platform.lock:
            item = self._item(update_data["id"])
            item.update({k: v for k, v in update_data.items() if k != "id"})
            return dict(item)  # type: ignore[return-value]

    def delete_lineitem(self, line_item_id: str) -> None:
        with self.platform.lock:
            self._items().remove(self._item(line_item_id))

    def update_score(self, line_item_id: str, score: TScore) -> UpdateScoreStatus:
        with self.platform.lock:
            item = self._item(line_item_id)
            previous = [s for i, s in self.platform.recorded.score_posts if i == item["id"]]
            self.platform.recorded.score_posts.append((item["id"], dict(score)))
        mine = [s for s in previous if s.get("userId") == score.get("userId")]
        return UpdateScoreStatus.SUCCESS if mine else UpdateScoreStatus.CREATED

    def get_results(
        self,
        line_item_id: str,
        page: int = 1,
        limit: int | None = None,
        user_id: str | None = None,
    ) -> TPage:
        scores = self.platform.scores(self.context_id)
        item = self.find_lineitem(line_item_id)
        content = [
            {"userId": user, "resultScore": s["scoreGiven"], "scoreOf": item["id"]}
            for (item_id, user), s in scores.items()
            if item_id == item["id"] and user_id in (None, user)
        ]
        return {"content": content, "has_next": False}


class HarnessNrps(NamesRoleProvisioningService):
    def __init__(
        self, request: Request, conf: HarnessConf, platform: LibraryPlatform, course: Course
    ) -> None:
        super().__init__(request, conf, platform.memberships_url(course.id))
        self.platform, self.course = platform, course

    def get_context_by_id(self) -> Context:
        return Context(id=self.course.id, label=self.course.label, title=self.course.title)

    def get_member_data_page(
        self,
        page: int = 1,
        limit: int | None = None,
        role: str | None = None,
        since: str | None = None,
    ) -> TPage:
        with self.platform.lock:
            self.platform.recorded.membership_requests.append({"page": page, "limit": limit})
            members = [dict(m) for m in self.platform.rosters.get(self.course.id, [])]
        if role:
            members = [m for m in members if role in m["roles"]]
        if not limit:
            return {"content": members, "has_next": False}
        start = (page - 1) * limit
        return {"content": members[start : start + limit], "has_next": len(members) > start + limit}


# --- the platform ------------------------------------------------------------------------------
class LibraryPlatform:
    """One LMS (issuer, client id, deployment "1") for the tool at ``tool_url``."""

    def __init__(self, tool_url: str) -> None:
        tag = _tag()
        self.tool_url = tool_url.rstrip("/")
        self.issuer = f"https://lms-{tag}.interop.example.org"
        self.client_id = f"interop-{tag}"
        self.deployment_id = "1"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.public_pem = (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        self.lock = threading.Lock()
        self.pending: dict[str, PendingLaunch] = {}
        self.gradebook: dict[str, list[dict[str, Any]]] = {}
        self.rosters: dict[str, list[dict[str, Any]]] = {}
        self.courses: dict[str, Course] = {}
        self.recorded = Recorded()
        self._next_item = 0
        self.org_id = 0  # the organisation ``platform add`` created (set by the fixture)
        self.url = ""
        self._server: BackgroundServer | None = None
        self.app = self._build_app()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LibraryPlatform:
        self._server = BackgroundServer(self.app, name="library-platform")
        self.url = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    # -- the library's objects -----------------------------------------------------------------
    def registration(self) -> Registration:
        """A fresh registration per request: the library caches the tool's JWKS in it."""
        return (
            Registration()
            .set_iss(self.issuer)
            .set_client_id(self.client_id)
            .set_deployment_id(self.deployment_id)
            .set_launch_url(self.tool_url + "/lti/launch")
            .set_deeplink_launch_url(self.tool_url + "/lti/launch")
            .set_oidc_login_url(self.tool_url + "/lti/login")
            .set_tool_key_set_url(self.tool_url + "/lti/jwks")
            .set_platform_public_key(self.public_pem)
            .set_platform_private_key(self.private_pem)
        )

    def conf(self) -> HarnessConf:
        conf = HarnessConf(registration=self.registration())
        conf.get_registration()
        return conf

    # -- URLs the tool is registered with ------------------------------------------------------
    @property
    def auth_login_url(self) -> str:
        return self.url + "/auth"

    @property
    def auth_token_url(self) -> str:
        return self.url + "/token"

    @property
    def key_set_url(self) -> str:
        return self.url + "/jwks"

    def lineitems_url(self, context_id: str) -> str:
        return f"{self.url}/ags/{context_id}/lineitems"

    def memberships_url(self, context_id: str) -> str:
        return f"{self.url}/nrps/{context_id}/memberships"

    # -- the LMS side of things (an instructor adding a graded link, a class list) -------------
    def add_lineitem(self, context_id: str, data: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._next_item += 1
            item = {**data, "id": f"{self.lineitems_url(context_id)}/{self._next_item}"}
            self.gradebook.setdefault(context_id, []).append(item)
            return dict(item)

    def lineitems(self, course: Course) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(item) for item in self.gradebook.get(course.id, [])]

    def scores(self, context_id: str) -> dict[tuple[str, str], dict[str, Any]]:
        """The latest score per (line item id, user id) in one context."""
        prefix = self.lineitems_url(context_id) + "/"
        with self.lock:
            posts = list(self.recorded.score_posts)
        return {(i, s["userId"]): s for i, s in posts if i.startswith(prefix)}

    def set_roster(self, course: Course, members: list[tuple[Person, list[str], str]]) -> None:
        self.courses[course.id] = course
        with self.lock:
            self.rosters[course.id] = [
                {
                    "user_id": p.sub,
                    "name": p.name,
                    "email": p.email,
                    "roles": roles,
                    "status": status,
                }
                for p, roles, status in members
            ]

    def take_pending(self, hint: str) -> PendingLaunch | None:
        with self.lock:
            return self.pending.pop(hint, None)

    # -- driving a launch as a browser does ----------------------------------------------------
    def launch(
        self,
        browser: requests.Session,
        person: Person,
        course: Course,
        *,
        roles: list[str] | None = None,
        resource_link: dict[str, str] | None = None,
        custom: dict[str, str] | None = None,
        lineitem_url: str | None = None,
        offer_lineitems: bool = True,
        nrps_page_size: int | None = None,
        deep_linking: bool = False,
        accept_json: bool = True,
    ) -> requests.Response:
        """The library's login URL → the tool's ``/lti/login`` → its redirect here → the
        library's launch form POSTed to the tool, all in ``browser`` (cookies kept)."""
        self.courses[course.id] = course
        hint = f"msg-{uuid.uuid4().hex}"
        if resource_link is None and not deep_linking:
            resource_link = {"resource_link_id": f"rl-{_tag()}", "title": "Problem set"}
        with self.lock:
            self.pending[hint] = PendingLaunch(
                person,
                roles or [LEARNER],
                course,
                resource_link,
                custom,
                lineitem_url,
                offer_lineitems,
                nrps_page_size,
                deep_linking,
            )
        login = HarnessLogin(None, self.conf())
        login.set_lti_message_hint(hint=hint)
        if deep_linking:
            login.set_deeplinking_launch_url()
        page = browser.get(
            login.initiate_login(person.sub),
            headers={"Accept": ACCEPT_BROWSER},
            allow_redirects=False,
            timeout=30,
        )
        page = self._follow_to_platform(browser, page)
        assert page.status_code == 200, f"the platform refused: {page.status_code} {page.text}"
        form = parse_form(page.text)
        assert urlsplit(form["action"]).path == "/lti/launch", form
        return browser.post(
            form["action"],
            data=form["fields"],
            headers={"Accept": ACCEPT_JSON if accept_json else ACCEPT_BROWSER},
            timeout=30,
        )

    def _follow_to_platform(
        self, browser: requests.Session, answer: requests.Response
    ) -> requests.Response:
        """Follow the tool's login answer (a redirect, or an auto-submitting form) to ``/auth``."""
        for _hop in range(5):
            if answer.url.startswith(self.auth_login_url):
                return answer
            if answer.is_redirect:
                target = answer.headers["Location"]
                answer = browser.get(target, allow_redirects=False, timeout=30)
                continue
            assert answer.status_code == 200, f"login refused: {answer.status_code} {answer.text}"
            form = parse_form(answer.text)
            if form["method"].lower() == "post":
                answer = browser.post(
                    form["action"], data=form["fields"], allow_redirects=False, timeout=30
                )
            else:
                answer = browser.get(
                    form["action"], params=form["fields"], allow_redirects=False, timeout=30
                )
        raise AssertionError(f"the login never reached the platform: {answer.url}")

    # -- the HTTP side -------------------------------------------------------------------------
    def _build_app(self) -> Flask:
        app = Flask(f"lti1p3platform-{id(self)}")

        @app.get("/jwks")
        def jwks() -> FlaskResponse:
            return FlaskResponse(json.dumps(self.conf().get_jwks()), mimetype="application/json")

        @app.route("/auth", methods=["GET", "POST"])
        def auth() -> FlaskResponse:
            launch = HarnessLaunch(FlaskRequest(flask_request), self.conf(), self)
            try:
                page = launch.lti_launch()
            except PreflightRequestValidationException as exc:
                return FlaskResponse(f"authentication request refused: {exc!r}", status=400)
            return FlaskResponse(page, mimetype="text/html")

        @app.post("/token")
        def token() -> FlaskResponse:
            form = flask_request.form.to_dict()
            try:
                answer = self.conf().get_access_token(form)  # type: ignore[arg-type]
            except (MissingRequiredClaim, UnsupportedGrantType) as exc:
                return json_error(400, repr(exc))
            except (LtiException, jwt.InvalidTokenError) as exc:
                return json_error(401, repr(exc), "invalid_client")
            claims = jwt.decode(form["client_assertion"], options={"verify_signature": False})
            audience = claims.get("aud")
            audiences = audience if isinstance(audience, list) else [audience]
            if not (
                claims.get("iss") == claims.get("sub") == self.client_id
                and self.auth_token_url in audiences
            ):
                return json_error(401, f"client assertion claims {claims}", "invalid_client")
            with self.lock:
                self.recorded.token_requests.append(
                    {"assertion": claims, "requested": form["scope"], "granted": answer["scope"]}
                )
            return FlaskResponse(json.dumps(answer), mimetype="application/json")

        @app.post("/deep_link_return")
        def deep_link_return() -> FlaskResponse:
            try:
                items = self.conf().validate_deeplinking_resp(
                    {"JWT": flask_request.form.get("JWT", "")}
                )
            except (LtiException, LtiDeepLinkingResponseException, jwt.InvalidTokenError) as exc:
                return FlaskResponse(f"invalid deep linking response: {exc!r}", status=400)
            with self.lock:
                self.recorded.deep_link_items.append(items)
            return FlaskResponse("deep linking response received", mimetype="text/plain")

        def ags_call(context_id: str, handler: str, **kwargs: str) -> FlaskResponse:
            service = HarnessAgs(FlaskRequest(flask_request), self.conf(), self, context_id)
            try:
                return flask_response(service.handle_resp(getattr(service, handler), **kwargs))
            except (LtiException, jwt.InvalidTokenError) as exc:
                return json_error(401, repr(exc), "invalid_token")

        @app.route("/ags/<context_id>/lineitems", methods=["GET", "POST"])
        def lineitems(context_id: str) -> FlaskResponse:
            if flask_request.method == "POST":
                return ags_call(context_id, "handle_create_lineitem")
            return ags_call(context_id, "handle_get_lineitems")

        @app.route("/ags/<context_id>/lineitems/<item>", methods=["GET", "PUT", "DELETE"])
        def lineitem(context_id: str, item: str) -> FlaskResponse:
            handler = {
                "GET": "handle_get_lineitem",
                "PUT": "handle_update_lineitem",
                "DELETE": "handle_delete_lineitem",
            }[flask_request.method]
            return ags_call(context_id, handler, line_item_id=item)

        @app.post("/ags/<context_id>/lineitems/<item>/scores")
        def scores(context_id: str, item: str) -> FlaskResponse:
            return ags_call(context_id, "handle_update_score", line_item_id=item)

        @app.get("/ags/<context_id>/lineitems/<item>/results")
        def results(context_id: str, item: str) -> FlaskResponse:
            return ags_call(context_id, "handle_get_results", line_item_id=item)

        @app.get("/nrps/<context_id>/memberships")
        def memberships(context_id: str) -> FlaskResponse:
            course = self.courses.get(context_id)
            if course is None:
                return json_error(404, f"no context {context_id}")
            service = HarnessNrps(FlaskRequest(flask_request), self.conf(), self, course)
            try:
                return flask_response(service.handle_resp(service.handle_get_members))
            except (LtiException, jwt.InvalidTokenError) as exc:
                return json_error(401, repr(exc), "invalid_token")

        return app
