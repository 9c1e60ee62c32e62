"""The landing page's LMS-link part: which nbgrader assignment the launched link is, and the
instructor's one-time form that binds an unbound link (``POST /lti/resource-link``). A launch
or binding of a link with a line item also asks the worker to read the line item's due date
(``jobs.lineitem_due_dates``; never during the request).

The form carries a single-use token (``kv_store``, 30 minutes) that only a staff member's launch
page holds: the POST is tied to that launch, unforgeable from another site (no cookie is
involved) and checked against the user's live role in the course when it arrives.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Response, jsonify, make_response, render_template

from lti_exchange.errors import InvalidRequest, Unauthenticated
from lti_exchange.identifiers import validate_identifier
from lti_exchange.jobs.lineitem_due_dates import request_lineitem_due_date
from lti_exchange.lti.flask_glue import store
from lti_exchange.lti.headers import lms_page
from lti_exchange.lti.platform_client import SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY
from lti_exchange.models import STAFF_ROLES, ResourceLink
from lti_exchange.models.resource_link import BOUND_BY_CUSTOM
from lti_exchange.services.due_dates import lms_due_date
from lti_exchange.services.resource_links import (
    bind_resource_link,
    bindable_assignments,
    launch_link,
)
from lti_exchange.web.body_limits import json_or_form
from lti_exchange.web.current import get_session

BIND_TTL = 1800
# Not browser_binding's "lti-bind-": a posted token must never name another record of the store.
BIND_PREFIX = "lti-link-bind-"
BIND_KEYS = ("link", "user", "course")  # what landing_link saves for a token: database ids


def landing_link(launched, claims: dict[str, Any]) -> dict[str, Any] | None:
    """What the landing page says about the launched LMS link (None: not a resource link)."""
    from lti_exchange.lti.views import base_url

    session = get_session()
    link = launch_link(session, launched.course.id, claims)
    if link is None:
        return None
    view: dict[str, Any] = {
        "title": link.title,
        "assignment": link.assignment_name,
        "bound_by": link.bound_by,
        "bind_token": None,
    }
    if launched.enrolment.role in STAFF_ROLES and link.bound_by != BOUND_BY_CUSTOM:
        view["choices"] = bindable_assignments(session, launched.course.id)
        session.commit()  # end the read before the store's own transaction (SQLite)
        token = secrets.token_urlsafe(32)
        store().set(
            BIND_PREFIX + token,
            {"link": link.id, "user": launched.user.id, "course": launched.course.id},
            BIND_TTL,
        )
        view["bind_token"] = token
        view["bind_url"] = base_url() + "/lti/resource-link"
    return view


def ask_lineitem_due_date(launched, claims: dict[str, Any]) -> bool:
    """After a launch is recorded (committed): when its link is bound to an assignment, has a
    line item and the launch stated no ``due_at`` custom parameter (which outranks the line
    item's date), ask the worker to read the line item's ``endDateTime``; a learner's launch at
    most every few minutes per link. True when it asked."""
    if lms_due_date(claims) is not None:
        return False
    session = get_session()
    link = launch_link(session, launched.course.id, claims)
    if link is None or not link.lineitem_url or not link.assignment_name or not _readable(link):
        session.commit()
        return False
    link_id, staff = link.id, launched.enrolment.role in STAFF_ROLES
    session.commit()  # end the read before the store's own transaction (SQLite)
    return request_lineitem_due_date(store(), link_id, always=staff)


def _readable(link: ResourceLink) -> bool:
    """Whether the launch offered a scope to read the link's line item with."""
    return bool({SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY} & set(link.ags_scopes or []))


def bind_link() -> Response:
    """Bind the launched LMS link to an nbgrader assignment (an instructor's landing form)."""
    from lti_exchange.lti.views import frame_origins, wants_json

    values = json_or_form()
    token = values.get("bind_token")
    if not isinstance(token, str) or not token:
        raise InvalidRequest(
            "bind_token is missing: choose the assignment on the page the LMS link opened.",
            code="bind_token_missing",
        )
    # Check the choice before spending the single-use token, so a typo can be corrected.
    # One choice: a listed assignment's radio, else (the "another id" radio has the empty
    # value) the typed id; a typed id never overrides a listed choice.
    chosen = values.get("assignment_id") or values.get("assignment_id_other")
    name = validate_identifier(chosen, "assignment")
    saved = _bind_record(store().pop(BIND_PREFIX + token))
    link = bind_resource_link(get_session(), saved["link"], saved["user"], name)
    if link.lineitem_url and _readable(link):  # the assignment may take the column's due date
        link_id = link.id
        get_session().commit()  # end the read before the store's own transaction (SQLite)
        request_lineitem_due_date(store(), link_id, always=True)
    if wants_json():
        response = jsonify(resource_link_id=link.lti_resource_link_id, assignment_id=name)
    else:
        response = lms_page(
            make_response(render_template("lti_link_bound.html", link=link, assignment=name)),
            frame_origins(),
        )
    response.headers["Cache-Control"] = "no-store"
    return response


def _bind_record(saved: object) -> dict[str, int]:
    """The record a binding token names, as ``landing_link`` saved it; anything else (none,
    expired, used, or not ours) is the expired-form 401."""
    if not isinstance(saved, dict) or not all(_is_id(saved.get(key)) for key in BIND_KEYS):
        raise Unauthenticated(
            "This form has expired or was already used: open the link from the LMS again.",
            code="bind_expired",
        )
    return {key: saved[key] for key in BIND_KEYS}


def _is_id(value: object) -> bool:
    """A database id: a positive int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
