"""``/lti/login``, ``/lti/launch``, ``/lti/jwks``, ``/lti/config`` and deep linking."""

from __future__ import annotations

import logging
import math
import secrets
from typing import Any

from flask import Blueprint, jsonify, make_response, render_template, request
from pylti1p3.deep_link_resource import DeepLinkResource
from pylti1p3.exception import LtiException, OIDCException
from pylti1p3.lineitem import LineItem

from lti_exchange.errors import ApiError, Forbidden, InvalidRequest, Unauthenticated
from lti_exchange.identifiers import validate_identifier
from lti_exchange.jobs.roster import request_roster_sync_if_due
from lti_exchange.logging_setup import current_request_id
from lti_exchange.lti.browser_binding import (
    login_state_params,
    proven_launch,
    storage_login_page,
    unbound_launch,
)
from lti_exchange.lti.dashboard_views import open_page_session
from lti_exchange.lti.error_pages import LAUNCH_REASON, advice_for
from lti_exchange.lti.flask_glue import message_launch, oidc_login, store, tool_conf
from lti_exchange.lti.headers import lms_frame_origins, lms_page
from lti_exchange.lti.link_views import ask_lineitem_due_date, bind_link, landing_link
from lti_exchange.lti.notebook_url import notebook_url as user_notebook_url
from lti_exchange.lti.tool_conf import tool_jwks
from lti_exchange.models import LtiRegistration
from lti_exchange.services.chooser import (
    MAX_POINTS,
    known_points,
    released_assignments,
    settled_max_score,
)
from lti_exchange.services.launch import deep_link_choices, record_launch
from lti_exchange.services.provisioning import CLAIM, LaunchRejected
from lti_exchange.tokens.refresh import token_pair
from lti_exchange.web.body_limits import json_or_form
from lti_exchange.web.current import app_objects, get_session
from lti_exchange.web.errors import close_if_unread
from lti_exchange.web.metrics import mark_launch

log = logging.getLogger(__name__)
bp = Blueprint(
    "lti",
    __name__,
    url_prefix="/lti",
    template_folder="../templates",
    static_folder="../static",  # the pages' CSS and scripts: served here, never from a CDN
    static_url_path="/static",
)

DEEP_LINK_TTL = 1800
DEEP_LINKING = "LtiDeepLinkingRequest"


class BaseUrlUnset(ApiError):
    status, code = 503, "base_url_unset"


def base_url() -> str:
    """Our public URL: ``LTI_EXCHANGE_BASE_URL``, else the bind address; never ``Host``."""
    url = app_objects().settings.public_base_url
    if not url:
        raise BaseUrlUnset(
            "This tool does not know its public address, so it cannot answer the LMS. "
            "The operator must set LTI_EXCHANGE_BASE_URL (e.g. https://exchange.example.edu).",
        )
    return url


def frame_origins(registration: LtiRegistration | None = None) -> list[str]:
    """The LMS origins that may frame our pages (see ``headers``)."""
    return lms_frame_origins(get_session(), app_objects().settings.frame_origins, registration)


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes["application/json"] > 0


class LaunchError(ApiError):
    status, code = 400, "lti_launch_failed"


@bp.errorhandler(ApiError)
def _lti_error(error: ApiError):
    log.warning(
        "LTI request refused: %s %s: %d %s (request %s)",
        request.method,
        request.path,
        error.status,
        error.code,
        current_request_id(),
    )
    if wants_json():
        response = jsonify(error.to_dict())
    else:
        response = make_response(
            render_template(
                "lti_error.html",
                error=error,
                status=error.status,
                advice=advice_for(error),
                request_id=current_request_id(),
            )
        )
        # Shown inside the LMS frame during a launch (it holds no token): LMS origins only.
        try:
            origins = frame_origins()
        except Exception:  # noqa: BLE001 - the database may be the error; then nobody frames
            origins = []
        lms_page(response, origins)
    response.status_code = error.status
    response.headers["Cache-Control"] = "no-store"
    return close_if_unread(response, error)


def _allowed_target(uri: str | None) -> bool:
    if not uri:
        return False
    base = base_url()
    return uri == base or uri.startswith(base + "/")


# -- login ------------------------------------------------------------------------------------
@bp.route("/login", methods=["GET", "POST"])
def login():
    """Third-party initiated login: check the registration, then redirect to the LMS."""
    params = request.values
    target = params.get("target_link_uri")
    if not _allowed_target(target):
        raise LaunchError(
            f"target_link_uri {str(target)[:200]!r} is not a URL of this tool ({base_url()}/…). "
            "Check the tool's launch URL in the LMS registration.",
            code="invalid_target_link_uri",
        )
    conf = tool_conf()
    login = oidc_login(conf)
    login.pass_params_to_launch(login_state_params(params, target))
    try:
        redirect = login.get_redirect_object(base_url() + "/lti/launch")
    except (OIDCException, LtiException) as exc:
        log.info("login refused by the LTI library: %s", exc)  # its words: the log only
        if "login hint" in str(exc).lower():
            raise LaunchError(
                "Login refused: the LMS sent no login_hint. Start the launch again from the "
                "LMS; if it keeps failing, the LMS's tool settings need checking.",
                code="invalid_login",
            ) from exc
        raise LaunchError(
            f"Login refused. The LMS (issuer {params.get('iss')!r}, client "
            f"{params.get('client_id')!r}) is not registered with this tool; ask your "
            "administrator to run `lti-exchange platform add`.",
            code="unknown_platform",
        ) from exc
    # The platform offers its storage (lti_storage_target): a page stores the state there first.
    page = storage_login_page(login, redirect.get_redirect_url(), conf.row, frame_origins)
    return page or redirect.do_redirect()


# -- launch -----------------------------------------------------------------------------------
@bp.post("/launch")
def launch():
    """Validate the id_token, provision user/course/enrolment, answer tokens or a page."""
    conf = tool_conf()
    message = message_launch(conf)
    try:
        claims = message.get_launch_data()
    except (LtiException, OIDCException) as exc:
        refused = Unauthenticated(
            f"The launch was refused: {exc}. Start it again from your LMS; if it keeps failing, "
            "tell your LMS administrator.",
            code="lti_launch_invalid",
        )
        setattr(refused, LAUNCH_REASON, str(exc))  # the error page words it (error_pages)
        raise refused from exc
    expected = message.login_params().get("target_link_uri")
    if claims.get(CLAIM + "target_link_uri") != expected:
        raise Unauthenticated(
            "The launch's target_link_uri does not match the login's. Start it again from your "
            "LMS.",
            code="lti_target_mismatch",
        )
    if not message.cookie_bound:  # no state cookie: bind via the platform's storage, or a new
        # window; never tokens here (login CSRF; see browser_binding)
        return unbound_launch(message, conf.row, frame_origins(conf.row), base_url(), wants_json())
    return _complete_launch(conf, message, claims)


@bp.get("/launch")
def launch_reloaded():
    """A reload or bookmark of the launch address: a page that says where to start instead."""
    refused = ApiError(
        "A launch is a form your LMS posts to /lti/launch; open the assignment from the LMS.",
        status=405,
        code="launch_needs_lms",
    )
    response = _lti_error(refused)
    response.headers["Allow"] = "POST"
    return response


@bp.post("/launch/bind")
def launch_bind():
    """Complete a launch whose state the platform's storage confirmed (``browser_binding``)."""
    conf = tool_conf()
    message = proven_launch(conf, base_url())
    return _complete_launch(conf, message, message.get_launch_data())


def _complete_launch(conf, message, claims: dict[str, Any]):
    """A launch bound to this browser: provision user/course/enrolment, answer tokens or a page."""
    session = get_session()
    try:
        registration, launched = record_launch(
            session, app_objects().settings, conf.row.issuer, conf.row.client_id, claims
        )
    except LaunchRejected as exc:
        raise LaunchError(str(exc), code="lti_launch_unusable") from exc
    if claims.get(CLAIM + "message_type") == DEEP_LINKING:
        mark_launch("deep_link")
        return _deep_link_page(session, message, launched, frame_origins(registration))
    pair = token_pair(app_objects(), session, launched.enrolment)
    session.commit()
    mark_launch("completed")
    if launched.enrolment.role in ("Instructor", "TeachingAssistant"):
        request_roster_sync_if_due(app_objects(), launched.course.id)
    ask_lineitem_due_date(launched, claims)  # the worker reads the line item's endDateTime
    return _answer_launch(pair, launched, registration, claims)


def _answer_launch(
    pair: dict[str, Any], launched, registration: LtiRegistration, claims: dict[str, Any]
):
    if wants_json():
        response = jsonify(pair)
    else:
        link = landing_link(launched, claims)  # the LMS link, its assignment, the bind form
        notebook_url = user_notebook_url(
            registration.notebook_url_template, launched.user.username, launched.course.code
        )
        response = lms_page(
            make_response(
                render_template(
                    "lti_landing.html",
                    pair=pair,
                    user=launched.user,
                    course=launched.course,
                    role=launched.roles.role,
                    service_url=base_url(),
                    handoff_url=(notebook_url + "lti-exchange/handoff") if notebook_url else "",
                    link=link,
                    **landing_extras(notebook_url, launched),
                )
            ),
            frame_origins(registration),
        )
    response.headers["Cache-Control"] = "no-store"
    return response


HANDOFF_READY_TIMEOUT = 10  # seconds the landing page waits for the hand-off page to load
HANDOFF_STORE_TIMEOUT = 25  # ... and for its answer (it checks the token with us: 15 s at most)


def landing_extras(notebook_url: str, launched) -> dict[str, Any]:
    """The landing page's links and hand-off timeouts: the notebook server's JupyterLab (where
    nbgrader's Assignments panel is; no URL opens the panel itself) and the page session of the
    dashboard pages (``dashboard_open.html``: the course dashboard for staff, My assignments)."""
    return {
        "notebook_url": notebook_url,
        "assignments_url": (notebook_url + "lab") if notebook_url else "",
        "handoff_ready_timeout": HANDOFF_READY_TIMEOUT,
        "handoff_store_timeout": HANDOFF_STORE_TIMEOUT,
        # the dashboard pages' session (a hidden form field of dashboard_open.html)
        "page_session": open_page_session(
            launched.user.id, launched.course.id, not_before=launched.enrolment.tokens_not_before
        ),
        "is_staff": launched.enrolment.role in ("Instructor", "TeachingAssistant"),
    }


bp.add_url_rule("/resource-link", "bind_resource_link", bind_link, methods=["POST"])


# -- deep linking -----------------------------------------------------------------------------
def _deep_link_page(session, message, launched, origins: list[str]):
    if launched.enrolment.role not in ("Instructor", "TeachingAssistant"):
        raise Forbidden(
            "Only instructors can add assignments to the course.", code="role_forbidden"
        )
    assignments = deep_link_choices(session, launched.course.id)
    released = released_assignments(session, launched.course.id)
    session.commit()  # release the write lock before the store's own transaction (SQLite)
    token = secrets.token_urlsafe(32)
    store().set(
        f"lti-deep-link-{token}",
        {
            "launch_id": message.get_launch_id(),
            "course_id": launched.course.code,
            "points": known_points(released),  # what the chooser pre-filled, per assignment
        },
        DEEP_LINK_TTL,
    )
    body = {
        "message_type": DEEP_LINKING,
        "course_id": launched.course.code,
        "assignments": assignments,
        "max_scores": known_points(released),  # {assignment: points} where a release states them
        "respond_url": base_url() + "/lti/deep-link",
        "deep_link_token": token,
    }
    if wants_json():
        response = jsonify(body)
    else:
        page = render_template(
            "lti_deep_link.html",
            **body,
            course_title=launched.course.title,
            released=released,  # each with its release's points: the maximum score's pre-fill
        )
        response = lms_page(make_response(page), origins)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/deep-link")
def deep_link_respond():
    """Answer the LMS with a signed LtiDeepLinkingResponse naming the chosen assignment."""
    values = json_or_form()
    token = values.get("deep_link_token")
    if not isinstance(token, str) or not token:
        raise InvalidRequest("deep_link_token is missing; start again from the LMS.")
    # Check the choice before spending the single-use session, so a typo can be corrected.
    # One choice: a listed assignment's radio, else (the "another id" radio has the empty
    # value) the typed id; a typed id never overrides a listed choice.
    chosen = values.get("assignment_id") or values.get("assignment_id_other")
    assignment_id = validate_identifier(chosen, "assignment")
    score = parse_max_score(values.get("max_score"))
    saved = store().pop(f"lti-deep-link-{token}")
    if saved is None:
        raise Unauthenticated(
            "This deep-linking session has expired or was already used; start again from the LMS.",
            code="deep_link_expired",
        )
    score = settled_max_score(
        score, values.get("max_score_for"), assignment_id, saved.get("points") or {}
    )
    conf = tool_conf()
    from lti_exchange.lti.flask_glue import data_storage, lti_request
    from lti_exchange.lti.message_launch import HardenedMessageLaunch

    try:
        launch = HardenedMessageLaunch.from_cache(
            saved["launch_id"], lti_request(), conf, launch_data_storage=data_storage()
        )
    except LtiException as exc:
        log.info("deep-link launch %s gone: %s", saved["launch_id"], exc)
        raise Unauthenticated(
            "The launch has expired; start again from the LMS.", code="deep_link_expired"
        ) from exc
    resource = (
        DeepLinkResource()
        .set_url(base_url() + "/lti/launch")
        .set_title(assignment_id)
        .set_custom_params(
            {"nbgrader_assignment_id": assignment_id, "nbgrader_course_id": saved["course_id"]}
        )
    )
    if score is not None:
        resource.set_lineitem(
            LineItem()
            .set_score_maximum(score)
            .set_label(assignment_id)
            .set_resource_id(assignment_id)
            .set_tag("nbgrader")
        )
    deep_link = launch.get_deep_link()
    jwt_value = deep_link.get_response_jwt([resource])
    return_url = deep_link._deep_link_settings["deep_link_return_url"]
    if wants_json():
        response = jsonify(return_url=return_url, jwt=jwt_value)
    else:
        response = lms_page(
            make_response(deep_link.get_response_form_html(jwt_value)),
            frame_origins(),
        )
    response.headers["Cache-Control"] = "no-store"
    return response


def parse_max_score(raw: object) -> float | None:
    """The deep link's gradebook maximum: absent, or a finite number in (0, 1 000 000]."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise InvalidRequest("max_score must be a number, e.g. 10.", code="invalid_max_score")
    try:
        score = float(raw)
    except OverflowError:  # an int beyond any float: out of range, said below
        score = math.inf
    except ValueError as exc:
        raise InvalidRequest(
            f"max_score must be a number, e.g. 10 (got {str(raw)[:40]!r}).",
            code="invalid_max_score",
        ) from exc
    if not math.isfinite(score) or not 0 < score <= MAX_POINTS:
        raise InvalidRequest(
            f"max_score must be a number greater than 0 and at most {MAX_POINTS:,} "
            f"(got {str(raw)[:40]!r}); leave it empty to create no gradebook column.",
            code="invalid_max_score",
        )
    return score


# -- keys and configuration -------------------------------------------------------------------
@bp.get("/jwks")
def jwks():
    response = jsonify(tool_jwks(app_objects().tool_keys))
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/config")
def config():
    """What an LMS administrator pastes when registering the tool."""
    base = base_url()
    return jsonify(
        title="nbgrader exchange (lti-exchange)",
        description="Jupyter notebook assignments with nbgrader: release, submit, feedback.",
        oidc_initiation_url=base + "/lti/login",
        target_link_uri=base + "/lti/launch",
        redirect_uris=[base + "/lti/launch"],
        public_jwk_url=base + "/lti/jwks",
        deep_linking_url=base + "/lti/launch",
        scopes=[
            "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
            "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
            "https://purl.imsglobal.org/spec/lti-ags/scope/score",
            "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
        ],
        messages=[
            {"type": "LtiResourceLinkRequest", "target_link_uri": base + "/lti/launch"},
            {"type": "LtiDeepLinkingRequest", "target_link_uri": base + "/lti/launch"},
        ],
        custom_parameters={
            "nbgrader_course_id": "(optional) the nbgrader course id",
            "due_at": "$ResourceLink.submission.endDateTime",  # the due date, for the dashboard
        },
        claims=["iss", "sub", "name", "given_name", "family_name", "email"],
    )
