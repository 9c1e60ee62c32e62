"""The LTI pages that take JSON or a form (``/lti/deep-link``, ``/lti/resource-link``) read JSON as
the API does (bounded nesting, no NaN, 400 in the error shape), and a binding token can only name
a binding form's record.

Before: deep nesting reached a RecursionError (500), a ``max_score`` of 10**400 an OverflowError
(500), and ``bind_token=lti1p3-launch-<uuid>`` popped the browser-binding record of that launch
(spending its proof) and then failed with a KeyError (500).
"""

from __future__ import annotations

import uuid

import pytest
import requests

from lti_exchange.lti import link_views
from lti_exchange.lti.browser_binding import BIND_PREFIX as LAUNCH_BIND_PREFIX
from lti_exchange.lti.store import DatabaseStore
from lti_exchange.web.body_limits import MAX_JSON_DEPTH
from tests.functional.lti.helpers import assert_html_error
from tests.support import assert_error

# Request parsing does not depend on the database.
pytestmark = pytest.mark.one_backend

ROUTES = {
    "deep-link": ("/lti/deep-link", "deep_link_token"),
    "resource-link": ("/lti/resource-link", "bind_token"),
}
JSON_ACCEPT = {"Content-Type": "application/json", "Accept": "application/json"}
JSON_HTML = {"Content-Type": "application/json", "Accept": "text/html"}


def post(server, path: str, body: str | bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(server.url + path, data=body, headers=headers, timeout=60)


def kv(server) -> DatabaseStore:
    return DatabaseStore(server.state().session_factory)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 100_000])
@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES.keys())
def test_deeply_nested_json_is_a_400(live_server, route, depth):
    path, token_field = route
    body = f'{{"{token_field}": "t", "assignment_id": "ps1", "x": ' + "[" * depth + "]" * depth
    body += "}"
    error = assert_error(post(live_server, path, body, JSON_ACCEPT), 400, "invalid_request")
    assert "nested" in error["message"] and str(MAX_JSON_DEPTH) in error["message"]
    page = assert_html_error(post(live_server, path, body, JSON_HTML), (400,), ("nested",))
    assert str(MAX_JSON_DEPTH) in page


@pytest.mark.parametrize(
    "body",
    [b'{"a": 1', b"\xff\xfe{", b'{"a": NaN}', b"1" * 5000, b'"' + b'\\"' * 20000, b"[1, 2]"],
    ids=["cut", "bad-utf16", "nan", "huge-number", "escaped-quotes", "array"],
)
@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES.keys())
def test_malformed_json_is_a_400_in_the_error_shape(live_server, route, body):
    error = assert_error(post(live_server, route[0], body, JSON_ACCEPT), 400, "invalid_request")
    assert "JSON" in error["message"]
    assert_html_error(post(live_server, route[0], body, JSON_HTML), (400,), ("JSON",))


@pytest.mark.parametrize("score", ["1" + "0" * 400, "-" + "9" * 4000])
def test_deep_link_max_score_beyond_any_float_is_a_400(live_server, score):
    body = '{"deep_link_token": "t", "assignment_id": "ps1", "max_score": ' + score + "}"
    answer = post(live_server, "/lti/deep-link", body, JSON_ACCEPT)
    error = assert_error(answer, 400, "invalid_max_score", "max_score")
    assert "at most" in error["message"]


@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES.keys())
def test_huge_int_as_the_assignment_is_a_400(live_server, route):
    path, token_field = route
    body = f'{{"{token_field}": "t", "assignment_id": 1{"0" * 400}}}'
    assert_error(post(live_server, path, body, JSON_ACCEPT), 400, "invalid_identifier")


# --- binding tokens -----------------------------------------------------------------------------


def bind(server, token: str, accept: str = "application/json") -> requests.Response:
    return requests.post(
        server.url + "/lti/resource-link",
        json={"bind_token": token, "assignment_id_other": "ps1"},
        headers={"Accept": accept},
        timeout=60,
    )


def test_a_launch_id_as_binding_token_spends_nothing(live_server):
    """``bind_token=lti1p3-launch-<uuid>`` must not name the launch's browser-binding record."""
    launch_id = f"lti1p3-launch-{uuid.uuid4()}"
    key = LAUNCH_BIND_PREFIX + launch_id
    kv(live_server).set(key, {"state": "the-launch-state"}, 600)
    assert link_views.BIND_PREFIX + launch_id != key
    assert_error(bind(live_server, launch_id), 401, "bind_expired", "open the link")
    assert_html_error(bind(live_server, launch_id, "text/html"), (401,), ("open the link",))
    # The launch can still be confirmed: its record was not consumed.
    assert kv(live_server).get(key) == {"state": "the-launch-state"}


@pytest.mark.parametrize(
    "record",
    [
        {"state": "s"},
        {"link": "1", "user": 1, "course": 1},
        {"link": 1, "user": None, "course": 1},
        {"link": True, "user": 1, "course": 1},
        {"link": 1, "user": 1},
        ["link", "user", "course"],
        "lti",
    ],
    ids=["other-record", "str-id", "null-id", "bool-id", "no-course", "list", "string"],
)
def test_a_binding_record_of_the_wrong_shape_is_an_expired_form(live_server, record):
    token = f"odd-{uuid.uuid4().hex}"
    kv(live_server).set(link_views.BIND_PREFIX + token, record, 600)
    assert_error(bind(live_server, token), 401, "bind_expired", "open the link")
    assert kv(live_server).get(link_views.BIND_PREFIX + token) is None  # spent, single use


def test_binding_tokens_have_their_own_prefix():
    assert link_views.BIND_PREFIX != LAUNCH_BIND_PREFIX
    assert not link_views.BIND_PREFIX.startswith(LAUNCH_BIND_PREFIX)
    assert not LAUNCH_BIND_PREFIX.startswith(link_views.BIND_PREFIX)
