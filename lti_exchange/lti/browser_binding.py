"""Launches bound to the browser that started their login, also where the LMS frame drops cookies.

Login CSRF: an ``id_token`` + ``state`` pair obtained in one browser must never sign another
browser in. A launch is bound to the browser that ran ``/lti/login`` by, in this order:

1. the state cookie set by the login (``HardenedMessageLaunch.cookie_bound``);
2. the platform's storage (1EdTech "OIDC Login with LTI Client Side postMessages" and
   "postMessage Storage"): when the login carried ``lti_storage_target``, the login page stored
   the state with ``lti.put_data`` in the platform's storage frame before going to the platform;
   the launch answers a page that reads it back with ``lti.get_data`` in the same browser and,
   when it matches, posts a proof (launch id + state) from our own origin to
   ``/lti/launch/bind``. The proof is single-use and checked here; tokens come only after it;
3. neither: a page that starts the login again in a new window (top-level, where our cookie is
   first-party), never tokens.

API clients that ask for JSON are not browsers: they must keep the state cookie of their login
(a cookie jar); a cookie-less JSON launch is refused with ``lti_launch_unbound``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Response, make_response, render_template, request
from pylti1p3.exception import LtiException

from lti_exchange.errors import ApiError, Forbidden, InvalidRequest, Unauthenticated
from lti_exchange.lti.flask_glue import OIDCLogin, restored_launch, store
from lti_exchange.lti.headers import lms_page, origin
from lti_exchange.lti.message_launch import HardenedMessageLaunch
from lti_exchange.lti.tool_conf import DatabaseToolConf
from lti_exchange.models import LtiRegistration

# The platform's login initiation parameters, kept with the state for a new-window login.
LOGIN_PARAMS = (
    "iss",
    "login_hint",
    "lti_message_hint",
    "client_id",
    "lti_deployment_id",
    "target_link_uri",
)
MAX_LOGIN_PARAM = 4096
# A frame name (Canvas: "post_message_forwarding", Blackboard: "lti_storage_frame", "_parent").
STORAGE_TARGET = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
LAUNCH_ID = re.compile(r"lti1p3-launch-[0-9a-f-]{36}")
BIND_PREFIX = "lti-bind-"
BIND_TTL = 600


class LaunchNotBound(ApiError):
    status, code = 401, "lti_launch_unbound"


def storage_target(values: Any) -> str | None:
    """The platform's ``lti_storage_target``, when it sent a sane frame name."""
    target = values.get("lti_storage_target")
    if isinstance(target, str) and STORAGE_TARGET.fullmatch(target):
        return target
    return None


def login_state_params(values: Any, target_link_uri: str) -> dict[str, Any]:
    """What the login keeps server-side with its state: the target, the platform's login
    parameters (for a new-window login) and the storage frame the platform offered."""
    login = {
        key: values[key]
        for key in LOGIN_PARAMS
        if isinstance(values.get(key), str) and 0 < len(values[key]) <= MAX_LOGIN_PARAM
    }
    return {
        "target_link_uri": target_link_uri,
        "login": login,
        "storage_target": storage_target(values),
    }


def storage_login_page(
    login: OIDCLogin,
    redirect_url: str,
    registration: LtiRegistration | None,
    frame_origins: Callable[[LtiRegistration], list[str]],
) -> Response | None:
    """The login page that stores state and nonce in the platform's frame, then goes to the
    platform; None when the platform offered no storage (the caller redirects with the cookie)."""
    target = storage_target(request.values)
    platform_origin = origin(registration.auth_login_url) if registration else None
    if target is None or platform_origin is None:
        return None
    query = parse_qs(urlsplit(redirect_url).query)
    config = {
        "target": target,
        "origin": platform_origin,
        "state": query["state"][0],
        "nonce": query["nonce"][0],
        "redirect_url": redirect_url,
    }
    page = render_template("lti_login_storage.html", config=config)
    assert registration is not None
    return login.set_cookies(lms_page(make_response(page), frame_origins(registration)))


def unbound_launch(
    message: HardenedMessageLaunch,
    registration: LtiRegistration | None,
    origins: list[str],
    base_url: str,
    wants_json: bool,
) -> Response:
    """The answer to a valid launch that came without the state cookie: the storage check page,
    else the new-window page; never tokens. (The nonce is spent: the id_token cannot be used
    again by anyone.)"""
    params = message.login_params()
    if wants_json:
        raise LaunchNotBound(
            "This launch came without the state cookie of its login, so it cannot be tied to "
            "the client that started it. API clients must keep the cookies that /lti/login "
            "sets (a cookie jar) and send them with the launch.",
        )
    target = params.get("storage_target")
    platform_origin = origin(registration.auth_login_url) if registration else None
    storage = None
    if isinstance(target, str) and platform_origin:
        state = request.form["state"]
        launch_id = message.get_launch_id()
        store().set(BIND_PREFIX + launch_id, {"state": state}, BIND_TTL)
        storage = {
            "target": target,
            "origin": platform_origin,
            "state": state,
            "launch_id": launch_id,
            "bind_url": base_url + "/lti/launch/bind",
        }
    login = params.get("login")
    login = login if isinstance(login, dict) else {}
    page = render_template(
        "lti_launch_bind.html",
        storage=storage,
        login_url=base_url + "/lti/login",
        login_fields={k: v for k, v in login.items() if k in LOGIN_PARAMS},
    )
    response = lms_page(make_response(page), origins)
    if storage:
        # The proof is a form POST from this page: let the browser name our origin in ``Origin``
        # (``no-referrer`` would send ``Origin: null``); referrers still never leave our origin.
        response.headers["Referrer-Policy"] = "same-origin"
    return response


def _from_our_page(base_url: str) -> bool:
    """A request made by a page of ours: ``Sec-Fetch-Site: same-origin``, or (browsers without
    fetch metadata) an ``Origin`` that is ours. A form another site makes the browser post is
    neither."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    ours = origin(base_url)
    return ours is not None and request.headers.get("Origin") == ours


def proven_launch(conf: DatabaseToolConf, base_url: str) -> HardenedMessageLaunch:
    """Check a storage proof (single-use; the launch's own state; from our own page) and give
    back the launch it completes."""
    if not _from_our_page(base_url):
        raise Forbidden(
            "This confirmation must come from the tool's own launch page; another site sent it. "
            "Open the assignment again from your LMS.",
            code="lti_bind_cross_site",
        )
    launch_id = request.form.get("launch_id", "")
    state = request.form.get("state", "")
    if not LAUNCH_ID.fullmatch(launch_id) or not state:
        raise InvalidRequest(
            "launch_id and state are missing or malformed; open the assignment again from your "
            "LMS.",
            code="lti_bind_invalid",
        )
    saved = store().pop(BIND_PREFIX + launch_id)
    if not isinstance(saved, dict) or not hmac.compare_digest(
        str(saved.get("state", "")).encode(), state.encode()
    ):
        raise Unauthenticated(
            "This launch could not be confirmed: it expired, was already confirmed, or the LMS "
            "holds another state for it. Open the assignment again from your LMS.",
            code="lti_bind_invalid",
        )
    try:
        return restored_launch(conf, launch_id)
    except LtiException as exc:
        raise Unauthenticated(
            f"The launch has expired ({exc}); open the assignment again from your LMS.",
            code="lti_bind_invalid",
        ) from exc
