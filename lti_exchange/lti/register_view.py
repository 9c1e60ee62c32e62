"""``GET /lti/register``: the page an LMS opens for LTI Dynamic Registration
(``dynamic_registration`` does the work; this answers the page that closes the LMS dialog)."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, make_response, render_template, request

from lti_exchange.errors import ApiError
from lti_exchange.logging_setup import current_request_id
from lti_exchange.lti.dynamic_registration import register_platform
from lti_exchange.lti.flask_glue import store
from lti_exchange.lti.headers import configured_origins, lms_page, origin
from lti_exchange.lti.views import base_url, wants_json
from lti_exchange.web.current import app_objects

log = logging.getLogger(__name__)
bp = Blueprint("lti_register", __name__, url_prefix="/lti", template_folder="../templates")


@bp.get("/register")
def register():
    """Register the LMS that opened this one-time URL; answer a page that closes its dialog."""
    config_url = request.args.get("openid_configuration")
    origins = configured_origins(app_objects().settings.frame_origins)
    lms_origin = origin(config_url)
    if lms_origin:  # the page holds no secret: the LMS that opened it may show it in its frame
        origins = sorted({*origins, lms_origin})
    try:
        done = register_platform(
            app_objects().session_factory,
            store(),
            base_url(),
            invite=request.args.get("invite"),
            openid_configuration=config_url,
            registration_token=request.args.get("registration_token"),
        )
    except ApiError as error:
        log.warning(
            "LTI registration refused: %d %s (request %s)",
            error.status,
            error.code,
            current_request_id(),
        )
        if wants_json():
            response = jsonify(error.to_dict())
        else:
            response = lms_page(
                make_response(render_template("lti_registration.html", error=error)), origins
            )
        response.status_code = error.status
        response.headers["Cache-Control"] = "no-store"
        return response
    log.info(
        "LTI platform registered: %s client %s as organisation %d (request %s)",
        done.issuer,
        done.client_id,
        done.org_id,
        current_request_id(),
    )
    body = {
        "org_id": done.org_id,
        "name": done.name,
        "issuer": done.issuer,
        "client_id": done.client_id,
        "deployment_id": done.deployment_id,
    }
    if wants_json():
        response = jsonify(body)
    else:
        response = lms_page(
            make_response(render_template("lti_registration.html", registered=body)), origins
        )
    response.headers["Cache-Control"] = "no-store"
    return response
