"""LTI Dynamic Registration: ``platform invite`` → the LMS opens the URL → the tool registers
itself with the simulated LMS → launches from that LMS work; refusals register nothing."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import update

from lti_exchange.models import KeyValue
from lti_exchange.models.types import utcnow
from tests.functional.lti.conftest import lti_exchange
from tests.functional.lti.helpers import assert_html_error, assert_json_error, describe, launched
from tests.lms.platform import ACCEPT_BROWSER, ACCEPT_JSON, INSTRUCTOR, LEARNER, LmsContext
from tests.lms.registration import RegisteringPlatform

CLOSE = "org.imsglobal.lti.close"


@pytest.fixture
def lms(live_server):
    platform = RegisteringPlatform(live_server.url, name="Simulated Moodle DR").start()
    yield platform
    platform.stop()


def invite(live_server, *args: str) -> dict:
    answer = json.loads(lti_exchange(live_server, "platform", "invite", *args, "--json").stdout)
    url = answer["registration_url"]
    assert url.startswith(live_server.url + "/lti/register?invite="), answer
    return answer


def registrations(live_server) -> list[dict]:
    return json.loads(lti_exchange(live_server, "platform", "list", "--json").stdout)


def registered_issuers(live_server) -> set[str]:
    return {r["issuer"] for r in registrations(live_server)}


def open_url(url: str, *, accept: str = ACCEPT_BROWSER) -> requests.Response:
    return requests.get(url, headers={"Accept": accept}, timeout=60)


def assert_nothing_registered(live_server, lms: RegisteringPlatform) -> None:
    assert lms.registered == [], lms.registered
    assert lms.issuer not in registered_issuers(live_server)


def test_invite_registers_the_lms_and_its_launches_work(live_server, lms, browser):
    name = f"Moodle DR {lms.guid}"
    url = invite(live_server, "--name", name, "--ttl", "600")["registration_url"]
    page = open_url(lms.registration_url(url))
    assert page.status_code == 200, describe(page)
    assert page.headers["Content-Type"].startswith("text/html"), describe(page)
    assert CLOSE in page.text and "window.opener || window.parent" in page.text, page.text
    assert "closeDialog();" in page.text  # registered with a deployment: the dialog closes itself
    assert page.headers["Cache-Control"] == "no-store"
    # the LMS that opened it may frame it
    assert lms.url in page.headers["Content-Security-Policy"], page.headers
    assert lms.problems == [], lms.problems

    assert len(lms.registered) == 1, lms.registered
    sent = lms.registration_requests[0]["body"]
    tool = sent["https://purl.imsglobal.org/spec/lti-tool-configuration"]
    assert sent["redirect_uris"] == [live_server.url + "/lti/launch"], sent
    assert set(sent["scope"].split()) == {
        "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
        "https://purl.imsglobal.org/spec/lti-ags/scope/score",
        "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
    }, sent
    assert tool["domain"] == urlsplit(live_server.url).netloc, tool
    assert tool["custom_parameters"] == {"due_at": "$ResourceLink.submission.endDateTime"}, tool

    rows = [r for r in registrations(live_server) if r["issuer"] == lms.issuer]
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["name"] == name, row
    assert row["client_id"] == lms.registered[0]["client_id"], row
    assert row["deployment_ids"] == [lms.registered[0]["deployment_id"]], row
    assert row["auth_login_url"] == lms.auth_login_url, row
    assert row["auth_token_url"] == lms.auth_token_url, row
    assert row["key_set_url"] == lms.key_set_url, row

    context = LmsContext.make()
    teacher = launched(lms.launch(browser, roles=[INSTRUCTOR], context=context), "Instructor")
    student = launched(lms.launch(browser, roles=[LEARNER], context=context), "Learner")
    assert teacher["org_id"] == student["org_id"] == row["org_id"]
    assert teacher["course_id"] == student["course_id"] == context.label


def test_without_a_deployment_id_the_page_stays_open_with_what_to_do(live_server, lms):
    lms.send_deployment_id = False
    page = open_url(lms.registration_url(invite(live_server)["registration_url"]))
    assert page.status_code == 200, describe(page)
    assert "sent no deployment id" in page.text and "--deployment-id" in page.text, page.text
    assert "closeDialog();" not in page.text  # no automatic close: the administrator reads it first
    assert CLOSE in page.text  # the Close button still asks the LMS to close the dialog
    [row] = [r for r in registrations(live_server) if r["issuer"] == lms.issuer]
    assert row["deployment_ids"] == [], row


def test_the_invitation_works_once(live_server, lms):
    url = invite(live_server)["registration_url"]
    first = open_url(lms.registration_url(url), accept=ACCEPT_JSON)
    assert first.status_code == 200, describe(first)
    assert first.json()["client_id"] == lms.registered[0]["client_id"]
    again = open_url(lms.registration_url(url))
    page = assert_html_error(again, (403,), ("already used",))
    assert "lti-exchange platform invite" in page
    assert len(lms.registered) == 1, lms.registered
    assert len([r for r in registrations(live_server) if r["issuer"] == lms.issuer]) == 1


def test_concurrent_uses_of_one_invitation_register_once(live_server, lms):
    url = invite(live_server)["registration_url"]
    urls = [lms.registration_url(url) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda u: open_url(u, accept=ACCEPT_JSON), urls))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 403, 403, 403], [describe(a) for a in answers]
    assert len(lms.registered) == 1, lms.registered
    assert len([r for r in registrations(live_server) if r["issuer"] == lms.issuer]) == 1


def test_an_expired_invitation_is_refused(live_server, lms):
    url = invite(live_server, "--ttl", "60")["registration_url"]
    token = parse_qs(urlsplit(url).query)["invite"][0]
    key = "lti-invite:" + hashlib.sha256(token.encode()).hexdigest()
    with live_server.state().session_factory() as session:
        changed = session.execute(
            update(KeyValue)
            .where(KeyValue.key == key)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    assert changed.rowcount == 1  # the token is stored hashed, under this key
    answer = open_url(lms.registration_url(url))
    assert_html_error(answer, (403,), ("expired",))
    assert lms.config_requests == 0  # refused before anything was fetched
    assert_nothing_registered(live_server, lms)


@pytest.mark.parametrize("invite_value", [None, "", "made-up-invitation-token"])
def test_registration_without_a_valid_invitation_is_refused(live_server, lms, invite_value):
    query = "" if invite_value is None else f"invite={invite_value}"
    url = lms.registration_url(f"{live_server.url}/lti/register?{query}".rstrip("?"))
    error = assert_json_error(open_url(url, accept=ACCEPT_JSON), (403,), ("platform invite",))
    assert error["code"] in ("invitation_missing", "invitation_invalid"), error
    assert lms.config_requests == 0
    assert_nothing_registered(live_server, lms)


def test_non_https_configuration_is_refused_without_spending_the_invitation(live_server, lms):
    url = invite(live_server)["registration_url"]
    plain = lms.registration_url(
        url, openid_configuration="http://lms.example.edu/.well-known/openid-configuration"
    )
    error = assert_json_error(open_url(plain, accept=ACCEPT_JSON), (400,), ("https",))
    assert error["code"] == "https_required", error
    missing = open_url(url, accept=ACCEPT_BROWSER)  # opened in a browser, not by an LMS
    assert_html_error(missing, (400,), ("openid_configuration",))
    assert_nothing_registered(live_server, lms)
    # neither spent the invitation: the LMS can still use it
    done = open_url(lms.registration_url(url), accept=ACCEPT_JSON)
    assert done.status_code == 200, describe(done)
    assert len(lms.registered) == 1


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"issuer": "https://lms.other.example.edu"}, ("issuer",)),
        ({"issuer": "ISSUER/elsewhere"}, ("issuer",)),
        ({"issuer": "http://127.0.0.1"}, ("issuer",)),
        ({"token_endpoint": "http://lms.example.edu/token"}, ("https",)),
        ({"registration_endpoint": None}, ("registration_endpoint",)),
        ({"token_endpoint_auth_methods_supported": ["client_secret_basic"]}, ("private_key_jwt",)),
    ],
)
def test_a_bad_configuration_registers_nothing(live_server, lms, override, words):
    lms.config_override = {
        k: (v.replace("ISSUER", lms.issuer) if isinstance(v, str) else v)
        for k, v in override.items()
    }
    url = invite(live_server)["registration_url"]
    answer = open_url(lms.registration_url(url))
    page = assert_html_error(answer, (400,), words)
    assert "platform add" in page  # what the administrator can do instead
    assert lms.registration_requests == []  # the tool never posted its registration
    assert_nothing_registered(live_server, lms)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_huge_configuration_is_refused(live_server, lms, chunked):
    document = lms.openid_configuration()
    document["padding"] = "x" * (200 * 1024)
    lms.config_body = json.dumps(document).encode()
    lms.config_chunked = chunked
    url = invite(live_server)["registration_url"]
    assert_json_error(open_url(lms.registration_url(url), accept=ACCEPT_JSON), (400,), ("bytes",))
    assert lms.registration_requests == []
    assert_nothing_registered(live_server, lms)


def test_a_configuration_that_is_not_json_is_refused(live_server, lms):
    lms.config_body = b"<html>Moodle login page</html>"
    url = invite(live_server)["registration_url"]
    assert_json_error(open_url(lms.registration_url(url), accept=ACCEPT_JSON), (400,), ("JSON",))
    assert_nothing_registered(live_server, lms)


def test_a_refused_registration_token_registers_nothing(live_server, lms):
    url = invite(live_server)["registration_url"]
    answer = open_url(lms.registration_url(url, token="not-issued-by-the-lms"), accept=ACCEPT_JSON)
    error = assert_json_error(answer, (400,), ("400",))
    assert error["code"] == "platform_refused", error
    assert_nothing_registered(live_server, lms)


def test_platform_invite_needs_the_public_url(live_server):
    env = {**live_server.settings_env(), "LTI_EXCHANGE_BASE_URL": "", "LTI_EXCHANGE_BIND": ""}
    from click.testing import CliRunner

    from lti_exchange.cli import main

    done = CliRunner(env=env).invoke(main, ["platform", "invite"])
    assert done.exit_code == 1, done.output
    assert "LTI_EXCHANGE_BASE_URL" in done.output
