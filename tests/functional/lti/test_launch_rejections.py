"""Launches the tool must refuse: the 12 1EdTech certification bad payloads, and every hardening
rule (replay, aud/azp, clock skew, stale iat, target_link_uri, unknown issuer/client/deployment,
forged signatures). Each refusal is a 4xx with a message that says what is wrong, never a 500."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
import requests
from sqlalchemy import select

from tests.functional.lti.helpers import assert_html_error, assert_json_error, describe, launched
from tests.lms.platform import (
    ACCEPT_JSON,
    CLAIM_DEPLOYMENT_ID,
    CLAIM_MESSAGE_TYPE,
    CLAIM_RESOURCE_LINK,
    CLAIM_ROLES,
    CLAIM_TARGET_LINK_URI,
    CLAIM_VERSION,
    INSTRUCTOR,
    LEARNER,
    LmsContext,
)

OTHER_AUDIENCE = "https://other-tool.example.org"


def drop(*keys: str):
    def change(claims: dict) -> dict:
        for key in keys:
            claims.pop(key, None)
        return claims

    return change


def setting(**values):
    def change(claims: dict) -> dict:
        claims.update(values)
        return claims

    return change


def course_exists(live_server, context_id: str) -> bool:
    from lti_exchange.models import Course

    with live_server.state().session_factory() as session:
        return (
            session.execute(select(Course.id).where(Course.lti_context_id == context_id)).first()
            is not None
        )


def _no_resource_link_id(claims: dict) -> dict:
    claims[CLAIM_RESOURCE_LINK].pop("id")
    return claims


# --- the 12 known bad payloads of the 1EdTech certification suite ------------------------------
BAD_PAYLOADS = [
    # (id, header forgery, claim change, words the message may use)
    ("no-kid-in-header", "no_kid", None, ("kid", "key")),
    ("incorrect-kid-in-header", "wrong_kid", None, ("kid", "key")),
    ("wrong-lti-version", None, setting(**{CLAIM_VERSION: "11.3"}), ("version",)),
    ("no-lti-version", None, drop(CLAIM_VERSION), ("version",)),
    (
        "invalid-lti-message",
        None,
        lambda claims: {"name": "badltilaunch"},
        ("iss", "nonce", "aud", "claim", "missing", "registration", "issuer", "required"),
    ),
    (
        "missing-lti-claims",
        None,
        drop("aud", "iss", "sub", CLAIM_DEPLOYMENT_ID, CLAIM_ROLES),
        ("iss", "aud", "claim", "missing", "registration", "issuer", "required"),
    ),
    (
        "timestamps-incorrect",
        None,
        setting(iat=11111, exp=22222),
        ("expired", "exp", "iat", "time", "issued"),
    ),
    (
        "message-type-claim-missing",
        None,
        drop(CLAIM_MESSAGE_TYPE),
        ("message_type", "message type"),
    ),
    ("role-claim-missing", None, drop(CLAIM_ROLES), ("role",)),
    ("deployment-id-claim-missing", None, drop(CLAIM_DEPLOYMENT_ID), ("deployment",)),
    (
        "resource-link-id-claim-missing",
        None,
        _no_resource_link_id,
        ("resource_link", "resource link"),
    ),
    ("user-claim-missing", None, drop("sub"), ("sub", "user")),
]


@pytest.mark.parametrize("roles", [[INSTRUCTOR], [LEARNER]], ids=["teacher", "student"])
@pytest.mark.parametrize(
    "header,change,words", [b[1:] for b in BAD_PAYLOADS], ids=[b[0] for b in BAD_PAYLOADS]
)
def test_certification_bad_payload_is_rejected(
    live_server, platform, browser, roles, header, change, words
):
    context = LmsContext.make()
    answer = platform.launch(browser, roles=roles, context=context, header=header, mutate=change)
    assert_json_error(answer, (400, 401, 403), words)
    assert not course_exists(live_server, context.id), "a refused launch provisioned its course"


def test_bad_payload_in_a_browser_gets_an_html_error_page(platform, browser):
    answer = platform.launch(
        browser, roles=[LEARNER], mutate=drop(CLAIM_VERSION), accept_json=False
    )
    assert_html_error(answer, (400, 401, 403), ("version",))


# --- replay, state and nonce ---------------------------------------------------------------------
@pytest.mark.all_backends  # single-use nonce: the key-value store's insert-if-absent
def test_replay_in_the_same_browser_is_rejected(platform, browser):
    answer = platform.launch(browser, roles=[LEARNER], replay=True)
    launched(answer.lti.first_response, "Learner")
    error = assert_json_error(answer, (401,), ("nonce", "replay"))
    assert error["status"] == 401


@pytest.mark.all_backends  # single-use nonce: the key-value store's insert-if-absent
def test_replay_from_another_browser_is_rejected(platform, browser):
    first = platform.launch(browser, roles=[LEARNER])
    launched(first)
    with requests.Session() as attacker:
        again = platform.post_form(attacker, first.lti)
    assert_json_error(again, (400, 401, 403), ("nonce", "replay", "state"))


def test_replay_with_accept_html_is_rejected_too(platform, browser):
    answer = platform.launch(browser, roles=[LEARNER], replay=True, accept_json=False)
    assert answer.lti.first_response.status_code == 200, describe(answer.lti.first_response)
    assert_html_error(answer, (401,), ("nonce", "replay"))


def test_state_not_issued_by_the_tool_is_rejected(platform, browser):
    answer = platform.launch(browser, roles=[LEARNER], form={"state": f"forged-{uuid.uuid4()}"})
    assert_json_error(answer, (400, 401, 403), ("state",))


def test_missing_state_is_rejected(platform, browser):
    answer = platform.launch(browser, roles=[LEARNER], form={"state": None})
    assert_json_error(answer, (400, 401, 403), ("state",))


def test_missing_id_token_is_rejected(platform, browser):
    answer = platform.launch(browser, roles=[LEARNER], form={"id_token": None})
    assert_json_error(answer, (400, 401, 403), ("id_token", "token"))


def test_garbage_id_token_is_rejected(platform, browser):
    answer = platform.launch(browser, roles=[LEARNER], form={"id_token": "not-a.jwt.at-all"})
    assert_json_error(answer, (400, 401, 403), ("id_token", "token", "decode", "invalid"))


def test_nonce_not_issued_by_the_tool_is_rejected(platform, browser):
    answer = platform.launch(browser, roles=[LEARNER], mutate=setting(nonce=uuid.uuid4().hex))
    assert_json_error(answer, (400, 401, 403), ("nonce", "state"))


def test_missing_nonce_is_rejected(platform, browser):
    answer = platform.launch(browser, roles=[LEARNER], mutate=drop("nonce"))
    assert_json_error(answer, (400, 401, 403), ("nonce",))


# --- aud and azp ---------------------------------------------------------------------------------
def test_several_audiences_without_azp_are_rejected(platform, browser):
    def change(claims):
        claims["aud"] = [platform.client_id, OTHER_AUDIENCE]
        del claims["azp"]
        return claims

    answer = platform.launch(browser, roles=[LEARNER], mutate=change)
    assert_json_error(answer, (400, 401, 403), ("azp", "aud"))


def test_azp_naming_another_client_is_rejected(platform, browser):
    def change(claims):
        claims["aud"] = [platform.client_id, OTHER_AUDIENCE]
        claims["azp"] = OTHER_AUDIENCE
        return claims

    answer = platform.launch(browser, roles=[LEARNER], mutate=change)
    assert_json_error(answer, (400, 401, 403), ("azp", "aud", "registration", "client"))


def test_azp_differing_from_a_single_aud_is_rejected(platform, browser):
    answer = platform.launch(browser, roles=[LEARNER], mutate=setting(azp="someone-else"))
    assert_json_error(answer, (400, 401, 403), ("azp", "aud"))


def test_untrusted_extra_audience_is_rejected(platform, browser):
    def change(claims):
        claims["aud"] = [platform.client_id, OTHER_AUDIENCE]
        claims["azp"] = platform.client_id
        return claims

    answer = platform.launch(browser, roles=[LEARNER], mutate=change)
    assert_json_error(answer, (400, 401, 403), ("aud", "audience"))


def test_aud_of_an_unknown_client_is_rejected(platform, browser):
    answer = platform.launch(
        browser, roles=[LEARNER], mutate=setting(aud="client-nobody", azp="client-nobody")
    )
    assert_json_error(answer, (400, 401, 403), ("client", "registration", "aud", "azp"))


# --- time ----------------------------------------------------------------------------------------
def test_iat_30_seconds_in_the_future_is_accepted(platform, browser):
    now = int(time.time())
    answer = platform.launch(browser, roles=[LEARNER], mutate=setting(iat=now + 30, exp=now + 330))
    launched(answer, "Learner")


def test_iat_120_seconds_in_the_future_is_rejected(platform, browser):
    now = int(time.time())
    answer = platform.launch(browser, roles=[LEARNER], mutate=setting(iat=now + 120, exp=now + 420))
    assert_json_error(answer, (400, 401, 403), ("iat", "not yet valid", "future", "issued"))


def test_exp_30_seconds_ago_is_accepted(platform, browser):
    now = int(time.time())
    answer = platform.launch(browser, roles=[LEARNER], mutate=setting(iat=now - 90, exp=now - 30))
    launched(answer, "Learner")


def test_exp_120_seconds_ago_is_rejected(platform, browser):
    now = int(time.time())
    answer = platform.launch(browser, roles=[LEARNER], mutate=setting(iat=now - 180, exp=now - 120))
    assert_json_error(answer, (400, 401, 403), ("expired", "exp"))


def test_stale_iat_is_rejected_even_with_a_valid_exp(platform, browser):
    now = int(time.time())
    answer = platform.launch(
        browser, roles=[LEARNER], mutate=setting(iat=now - 1200, exp=now + 300)
    )
    assert_json_error(answer, (400, 401, 403), ("iat", "issued", "old", "age"))


def test_missing_exp_is_rejected(platform, browser):
    answer = platform.launch(browser, roles=[LEARNER], mutate=drop("exp"))
    assert_json_error(answer, (400, 401, 403), ("exp",))


# --- target_link_uri -------------------------------------------------------------------------
def test_signed_target_link_uri_differing_from_the_login_is_rejected(platform, browser):
    answer = platform.launch(
        browser,
        roles=[LEARNER],
        mutate=setting(**{CLAIM_TARGET_LINK_URI: platform.tool_url + "/lti/elsewhere"}),
    )
    assert_json_error(answer, (400, 401, 403), ("target_link_uri", "target link"))


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/lti/launch",
        "{base}0/lti/launch",
        "{base}.evil.example/lti/launch",
        "{base}@evil.example/lti/launch",
        "",
    ],
    ids=["foreign", "longer-port", "longer-host", "userinfo", "empty"],
)
def test_login_with_a_foreign_target_link_uri_is_refused(platform, browser, target):
    target = target.format(base=platform.tool_url)
    answer = platform.launch(browser, roles=[LEARNER], login={"target_link_uri": target})
    assert answer.lti.auth_params is None, "the tool redirected to the platform anyway"
    assert_html_error(answer, (400,), ("target_link_uri", "target link"))
    as_json = browser.get(
        platform.tool_url + "/lti/login",
        params=answer.lti.login_params,
        headers={"Accept": ACCEPT_JSON},
        allow_redirects=False,
        timeout=30,
    )
    assert_json_error(as_json, (400,), ("target_link_uri", "target link"))


# --- unknown issuer, client, deployment ----------------------------------------------------------
def _login(browser, platform, accept: str, **params) -> requests.Response:
    values = {
        "iss": platform.issuer,
        "login_hint": "someone",
        "target_link_uri": platform.default_target_link_uri,
        "client_id": platform.client_id,
        "lti_deployment_id": "1",
    }
    values.update(params)
    values = {k: v for k, v in values.items() if v is not None}
    return browser.get(
        platform.tool_url + "/lti/login",
        params=values,
        headers={"Accept": accept},
        allow_redirects=False,
        timeout=30,
    )


@pytest.mark.parametrize(
    "params,words",
    [
        ({"iss": "https://unknown-lms.example.edu"}, ("issuer", "iss", "registered", "platform")),
        (
            {"iss": "https://unknown-lms.example.edu", "client_id": None},
            ("issuer", "iss", "registered", "platform"),
        ),
        ({"client_id": "client-nobody"}, ("client", "registered", "platform")),
        ({"iss": None}, ("iss", "issuer")),
        ({"login_hint": None}, ("login_hint", "login hint")),
    ],
    ids=["unknown-issuer", "unknown-issuer-no-client", "unknown-client", "no-iss", "no-login-hint"],
)
def test_bad_login_is_refused_with_400(platform, browser, params, words):
    as_json = _login(browser, platform, ACCEPT_JSON, **params)
    assert_json_error(as_json, (400,), words)
    as_html = _login(browser, platform, "text/html", **params)
    assert_html_error(as_html, (400,), words)


def test_launch_claiming_an_unknown_issuer_is_rejected(platform, browser):
    answer = platform.launch(
        browser, roles=[LEARNER], mutate=setting(iss="https://unknown-lms.example.edu")
    )
    assert_json_error(answer, (400, 401, 403), ("iss", "issuer", "registration", "platform"))


def test_launch_claiming_another_registered_issuer_is_rejected(platform, make_platform, browser):
    """Signed by this platform's key but naming another registered LMS as issuer."""
    other = make_platform(name="Other Blackboard", product_family_code="BlackboardLearn")
    answer = platform.launch(
        browser,
        roles=[INSTRUCTOR],
        mutate=setting(iss=other.issuer, aud=other.client_id, azp=other.client_id),
    )
    assert_json_error(
        answer, (400, 401, 403), ("signature", "key", "kid", "iss", "registration", "nonce")
    )


def test_unknown_deployment_is_rejected(platform, browser):
    answer = platform.launch(
        browser, roles=[LEARNER], mutate=setting(**{CLAIM_DEPLOYMENT_ID: "999-unknown"})
    )
    assert_json_error(answer, (400, 401, 403), ("deployment",))


def test_unknown_deployment_hint_at_login_is_rejected(platform, browser):
    platform.clients[platform.client_id].append("998-unknown")  # the LMS knows it, we do not
    try:
        answer = platform.launch(browser, roles=[LEARNER], deployment_id="998-unknown")
    finally:
        platform.clients[platform.client_id].remove("998-unknown")
    assert 400 <= answer.status_code < 500, describe(answer)
    if answer.headers.get("Content-Type", "").startswith("application/json"):
        assert_json_error(answer, (400, 401, 403), ("deployment",))
    else:
        assert_html_error(answer, (400, 401, 403), ("deployment",))


def test_deployment_of_another_registration_is_rejected(live_server, make_platform, browser):
    from tests.functional.lti.conftest import register_platform

    lms = make_platform()  # its own issuer: the shared platform keeps a single client
    other_client = lms.add_client(deployment_ids=(f"only-{uuid.uuid4().hex[:6]}",))
    register_platform(live_server, lms, client_id=other_client)
    foreign = lms.clients[other_client][0]
    answer = lms.launch(browser, roles=[LEARNER], mutate=setting(**{CLAIM_DEPLOYMENT_ID: foreign}))
    assert_json_error(answer, (400, 401, 403), ("deployment",))


def test_removed_platform_can_no_longer_launch(live_server, make_platform, browser):
    from tests.functional.lti.conftest import lti_exchange

    lms = make_platform(name="Retired Moodle")
    launched(lms.launch(browser, roles=[LEARNER]))
    listed = lti_exchange(live_server, "platform", "list", "--json").stdout
    assert lms.issuer in listed
    lti_exchange(
        live_server, "platform", "remove", "--issuer", lms.issuer, "--client-id", lms.client_id
    )
    assert lms.issuer not in lti_exchange(live_server, "platform", "list", "--json").stdout
    answer = lms.launch(browser, roles=[LEARNER])
    assert answer.lti.auth_params is None, "the tool still redirected to the removed platform"
    assert_html_error(answer, (400,), ("issuer", "iss", "registered", "platform"))


# --- forged signatures ---------------------------------------------------------------------------
def test_wrong_signature_is_rejected(platform, browser):
    answer = platform.launch(browser, roles=[INSTRUCTOR], header="attacker_key")
    assert_json_error(answer, (400, 401, 403), ("signature", "verif"))


def test_alg_none_is_rejected(platform, browser):
    answer = platform.launch(browser, roles=[INSTRUCTOR], header="alg_none")
    assert_json_error(answer, (400, 401, 403), ("alg", "signature", "key", "none", "rs256"))


def test_hs256_signed_with_the_platform_public_key_is_rejected(platform, browser):
    answer = platform.launch(browser, roles=[INSTRUCTOR], header="hs256_public_key")
    assert_json_error(answer, (400, 401, 403), ("alg", "hs256", "rs256", "signature", "key"))


def test_header_without_typ_is_accepted(platform, browser):
    """``typ`` is optional in a JWS header; the signature is what counts."""
    answer = platform.launch(
        browser, roles=[LEARNER], header=lambda h: {"alg": "RS256", "kid": h["kid"]}
    )
    launched(answer, "Learner")


def test_tampered_payload_with_the_original_signature_is_rejected(platform, browser):
    """A learner's genuine id_token whose roles were changed to Instructor in transit."""

    def escalate(id_token: str) -> str:
        header, payload, signature = id_token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims[CLAIM_ROLES] = [INSTRUCTOR]
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        return f"{header}.{forged}.{signature}"

    answer = platform.launch(browser, roles=[LEARNER], form={"id_token": escalate})
    assert_json_error(answer, (400, 401, 403), ("signature", "verif"))


# --- claims of the wrong kind ------------------------------------------------------------------
def test_numeric_sub_is_rejected(platform, browser):
    answer = platform.launch(browser, roles=[LEARNER], mutate=setting(sub=12345))
    assert_json_error(answer, (400, 401, 403), ("sub", "subject", "user"))


def test_unsupported_message_type_is_rejected(platform, browser):
    answer = platform.launch(
        browser, roles=[LEARNER], mutate=setting(**{CLAIM_MESSAGE_TYPE: "LtiNonsenseRequest"})
    )
    assert_json_error(answer, (400, 401, 403), ("message type", "message_type"))
