"""The Jupyter server extension that takes a user's tokens from the LTI landing page.

A real ``jupyter server`` runs for one person (own HOME, nbgrader config naming the live service),
with the extension enabled by the config file the package installs. Tokens posted to
``lti-exchange/tokens`` are checked with the real service and land in the person's token store,
where the real ``nbgrader`` command line finds them. The hand-off page's script is run in Node
against the same server, the way a browser would run it.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port
from tests.end_to_end.helpers import BIN, JupyterServer, Role
from tests.support import TAR, make_tar

SHIPPED_CONFIG = ROOT / "jupyter-config" / "jupyter_server_config.d" / "nbgrader_plugin.json"
INSTALLED_CONFIG = (
    Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "nbgrader_plugin.json"
)


class Notebook:
    """One person's Jupyter server and token store."""

    def __init__(self, server: JupyterServer, service_url: str) -> None:
        self.server = server
        self.role = server.role
        self.service_url = service_url
        self.token_file = self.role.home / ".lti-exchange" / "tokens.json"

    def post_tokens(self, body, auth: bool = True, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if auth:
            headers["Authorization"] = f"token {self.server.token}"
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        return requests.post(
            self.server.url + "/lti-exchange/tokens",
            data=body,
            headers=headers,
            timeout=60,
            allow_redirects=False,
            **kwargs,
        )

    def store_text(self) -> str | None:
        return self.token_file.read_text() if self.token_file.exists() else None

    def entry(self, course: str) -> dict | None:
        text = self.store_text()
        return json.loads(text)["courses"].get(course) if text else None

    def log(self) -> str:
        return (self.role.home / "jupyter.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def notebook(live_server, tmp_path_factory):
    role = Role("dana", tmp_path_factory.mktemp("handoff"), live_server.url)
    if not INSTALLED_CONFIG.is_file():
        # setuptools' editable installs skip data files (a wheel install puts SHIPPED_CONFIG in
        # <prefix>/etc/jupyter/jupyter_server_config.d): enable it the documented way, per user.
        role.run(str(BIN / "lti-exchange"), "handoff", "enable", "--user")
        written = role.home / ".jupyter" / "jupyter_server_config.d" / SHIPPED_CONFIG.name
        assert json.loads(written.read_text()) == json.loads(SHIPPED_CONFIG.read_text())
    server = JupyterServer(role, free_port())
    yield Notebook(server, live_server.url)
    server.stop()


def release_ps1(live_server, course: str) -> None:
    teacher = live_server.issue_token("teacher", course, "Instructor")
    answer = live_server.api(
        "POST",
        f"courses/{course}/assignments/ps1/releases",
        teacher,
        data=make_tar({"problem1.ipynb": b'{"cells": []}'}),
        headers=TAR,
    )
    assert answer.status_code == 201, answer.text


# --- packaging ------------------------------------------------------------------------------


def test_package_installs_the_config_that_enables_the_extension(notebook):
    config = json.loads(SHIPPED_CONFIG.read_text())
    assert config == {
        "ServerApp": {"jpserver_extensions": {"nbgrader_plugin.server_extension": True}}
    }
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data_files = pyproject["tool"]["setuptools"]["data-files"]
    assert (
        str(SHIPPED_CONFIG.relative_to(ROOT)) in data_files["etc/jupyter/jupyter_server_config.d"]
    )
    listing = subprocess.run(
        [str(BIN / "jupyter"), "server", "extension", "list"],
        env=notebook.role.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = re.sub(r"\x1b\[[0-9;]*m", "", listing.stdout + listing.stderr)
    assert re.search(r"nbgrader_plugin\.server_extension\s+enabled", output), output
    assert re.search(r"nbgrader_plugin\.server_extension\s+OK", output), output


# --- storing tokens ---------------------------------------------------------------------------


def test_stored_tokens_are_what_nbgrader_uses(live_server, notebook, course):
    release_ps1(live_server, course)
    access = live_server.issue_token("dana", course, "Learner")
    refresh = "refresh-" + course
    answer = notebook.post_tokens(
        {"access_token": access, "refresh_token": refresh, "service_url": live_server.url}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["stored"] is True
    assert (body["course_id"], body["username"], body["role"]) == (course, "dana", "Learner")
    assert body["token_file"] == str(notebook.token_file)
    assert access not in answer.text

    entry = notebook.entry(course)
    assert entry["access_token"] == access
    assert entry["refresh_token"] == refresh
    assert entry["service_url"] == live_server.url
    assert stat.S_IMODE(notebook.token_file.stat().st_mode) == 0o600

    listed = notebook.role.nbgrader("list", "--course", course)
    assert listed.lines(f"{course} ps1"), listed.output

    log = notebook.log()
    assert f"stored tokens for course {course}" in log
    assert access not in log and refresh not in log


def test_trailing_slash_of_the_service_url_does_not_matter(live_server, notebook, course):
    access = live_server.issue_token("dana", course, "TeachingAssistant")
    answer = notebook.post_tokens({"access_token": access, "service_url": live_server.url + "/"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["role"] == "TeachingAssistant"
    entry = notebook.entry(course)
    assert entry["service_url"] == live_server.url
    assert entry["refresh_token"] is None


def test_a_second_course_is_added_next_to_the_first(live_server, notebook, course):
    first = live_server.issue_token("dana", course, "Learner")
    second = live_server.issue_token("dana", course + "b", "Instructor")
    for token in (first, second):
        answer = notebook.post_tokens({"access_token": token, "service_url": live_server.url})
        assert answer.status_code == 200, answer.text
    assert notebook.entry(course)["access_token"] == first
    assert notebook.entry(course + "b")["access_token"] == second


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "token wrong-token"])
def test_unauthenticated_requests_store_nothing(live_server, notebook, course, header):
    access = live_server.issue_token("dana", course, "Learner")
    before = notebook.store_text()
    headers = {"Authorization": header} if header else {}
    answer = notebook.post_tokens(
        {"access_token": access, "service_url": live_server.url}, auth=False, headers=headers
    )
    assert answer.status_code in (302, 403), answer.text
    assert notebook.store_text() == before
    assert notebook.entry(course) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"service_url": "{url}"}, "'access_token' is missing"),
        ({"access_token": 12, "service_url": "{url}"}, "'access_token' must be a string"),
        ({"access_token": "x" * 9000, "service_url": "{url}"}, "longer than 8192"),
        ({"access_token": "a b", "service_url": "{url}"}, "'access_token' is not a token"),
        ({"access_token": "a.b.c", "refresh_token": ["r"], "service_url": "{url}"}, "string"),
        ({"access_token": "a.b.c"}, "'service_url' is missing"),
        ({"access_token": "a.b.c", "service_url": "ftp://127.0.0.1/"}, "http or https"),
        ({"access_token": "a.b.c", "service_url": "http://u:p@127.0.0.1/"}, "credentials"),
        ({"access_token": "a.b.c", "service_url": "http://h/" + "p" * 2100}, "longer than 2048"),
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ("{" + " " * 40000 + "}", "larger than"),
    ],
)
def test_bad_bodies_are_refused(live_server, notebook, body, message):
    if isinstance(body, dict):
        body = {
            k: v.format(url=live_server.url) if k == "service_url" else v for k, v in body.items()
        }
    before = notebook.store_text()
    answer = notebook.post_tokens(body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["stored"] is False
    assert message in answer.json()["message"]
    assert notebook.store_text() == before


def test_garbage_token_gets_the_services_message(live_server, notebook):
    garbage = "eyJnYXJiYWdl.bm90LWEtand0.c2lnbmF0dXJl"
    before = notebook.store_text()
    answer = notebook.post_tokens({"access_token": garbage, "service_url": live_server.url})
    assert answer.status_code == 400, answer.text
    message = answer.json()["message"]
    assert message.startswith("The exchange refused the token: The access token is malformed")
    assert garbage not in message
    assert notebook.store_text() == before
    assert garbage not in notebook.log()


def test_expired_token_gets_the_services_message(live_server, notebook, course):
    expired = live_server.issue_token("dana", course, "Learner", ttl=-3600)
    answer = notebook.post_tokens({"access_token": expired, "service_url": live_server.url})
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "token_expired"
    assert "Your access token has expired" in answer.json()["message"]
    assert notebook.entry(course) is None
    assert expired not in notebook.log()


def test_tokens_of_another_service_are_refused(live_server, notebook, course):
    access = live_server.issue_token("dana", course, "Learner")
    other = "http://127.0.0.1:1"
    answer = notebook.post_tokens({"access_token": access, "service_url": other})
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "wrong_service"
    assert other in answer.json()["message"] and live_server.url in answer.json()["message"]
    assert notebook.entry(course) is None


# --- the hand-off page ----------------------------------------------------------------------


def page_config(html: str) -> dict:
    found = re.search(r'id="lti-exchange-handoff-config">(.*?)</script>', html, re.S)
    assert found, html
    return json.loads(found.group(1))


def page_script(html: str) -> str:
    found = re.search(r'<script nonce="([^"]+)">(.*?)</script>', html, re.S)
    assert found, html
    return found.group(2)


def test_handoff_page_holds_a_listener_and_no_token(live_server, notebook, course):
    access = live_server.issue_token("dana", course, "Learner")
    stored = notebook.post_tokens({"access_token": access, "service_url": live_server.url})
    assert stored.status_code == 200, stored.text

    page = notebook.server.get("/lti-exchange/handoff")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert 'addEventListener("message"' in html
    assert '"lti-exchange:tokens"' in html and '"lti-exchange:ready"' in html
    assert "event.origin" in html
    assert access not in html and notebook.server.token not in html
    config = page_config(html)
    assert config["allowed_origins"] == [live_server.url]
    assert config["tokens_url"] == "/lti-exchange/tokens"

    csp = page.headers["Content-Security-Policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp).group(1)
    assert f'<script nonce="{nonce}">' in html
    assert "frame-ancestors 'none'" in csp
    assert page.headers["Cache-Control"] == "no-store"
    assert notebook.server.get("/lti-exchange/handoff").headers["Content-Security-Policy"] != csp


def test_handoff_page_needs_a_login(notebook):
    answer = requests.get(
        notebook.server.url + "/lti-exchange/handoff", timeout=30, allow_redirects=False
    )
    assert answer.status_code == 302
    assert "/login" in answer.headers["Location"]


def browser_session(notebook) -> tuple[requests.Session, str]:
    """A cookie-authenticated session, as a browser has after logging in; and the page."""
    session = requests.Session()
    login = session.get(notebook.server.url + "/login", timeout=30)
    assert login.status_code == 200
    answer = session.post(
        notebook.server.url + "/login",
        data={"password": notebook.server.token, "_xsrf": session.cookies["_xsrf"]},
        timeout=30,
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text
    page = session.get(notebook.server.url + "/lti-exchange/handoff", timeout=30)
    assert page.status_code == 200
    return session, page.text


def test_cookie_sessions_need_the_xsrf_header(live_server, notebook, course):
    session, html = browser_session(notebook)
    xsrf = page_config(html)["xsrf_token"]
    body = {
        "access_token": live_server.issue_token("dana", course, "Learner"),
        "service_url": live_server.url,
    }
    url = notebook.server.url + "/lti-exchange/tokens"

    refused = session.post(url, json=body, timeout=60)
    assert refused.status_code == 403, refused.text
    assert notebook.entry(course) is None
    cross_site = session.post(
        url,
        json=body,
        headers={"X-XSRFToken": xsrf, "Origin": "https://evil.example"},
        timeout=60,
    )
    assert cross_site.status_code in (403, 404), cross_site.text
    assert notebook.entry(course) is None

    accepted = session.post(url, json=body, headers={"X-XSRFToken": xsrf}, timeout=60)
    assert accepted.status_code == 200, accepted.text
    assert notebook.entry(course)["access_token"] == body["access_token"]


HARNESS = r"""
const fs = require("fs");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const out = {posted: [], requests: [], statuses: []};
const statusEl = {textContent: "", className: ""};
const listeners = {};
const window = {
  opener: {postMessage: (data, origin) => out.posted.push({to: "opener", data, origin})},
  addEventListener: (type, fn) => { listeners[type] = fn; },
};
const document = {
  cookie: "",
  getElementById: (id) => ({"lti-exchange-handoff-config": {textContent: input.config},
                            "lti-exchange-status": statusEl})[id] || null,
};
async function pageFetch(url, options) {
  out.requests.push({url, method: options.method, headers: options.headers,
                     credentials: options.credentials, body: options.body});
  return fetch(new URL(url, input.base), {
    method: options.method, body: options.body,
    headers: {...options.headers, Cookie: input.cookie},
  });
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
(async () => {
  new Function("window", "document", "fetch", input.script)(window, document, pageFetch);
  out.statuses.push(statusEl.textContent);
  for (const message of input.messages) {
    const replies = [];
    const source = {postMessage: (data, origin) => replies.push({data, origin})};
    listeners.message({data: message.data, origin: message.origin, source});
    for (let i = 0; i < 600 && message.reply && replies.length === 0; i++) { await sleep(50); }
    if (!message.reply) { await sleep(300); }
    out.posted.push(...replies.map((r) => ({to: "source", ...r})));
    out.statuses.push(statusEl.textContent);
  }
  console.log(JSON.stringify(out));
})();
"""


def run_page(notebook, tmp_path, messages: list[dict]) -> dict:
    """Run the hand-off page's script under Node with ``messages`` posted to it; what it did."""
    session, html = browser_session(notebook)
    harness = tmp_path / "harness.js"
    harness.write_text(HARNESS)
    done = subprocess.run(
        ["node", str(harness)],
        input=json.dumps(
            {
                "script": page_script(html),
                "config": json.dumps(page_config(html)),
                "base": notebook.server.url,
                "cookie": "; ".join(f"{c.name}={c.value}" for c in session.cookies),
                "messages": messages,
            }
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout), "xsrf_token": page_config(html)["xsrf_token"]}


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the page script")
def test_handoff_script_relays_tokens_only_from_the_exchange(
    live_server, notebook, course, tmp_path
):
    access = live_server.issue_token("dana", course, "Learner")
    evil = live_server.issue_token("mallory", course, "Learner")
    tokens = {
        "type": "lti-exchange:tokens",
        "refresh_token": "r-" + course,
        "service_url": live_server.url,
    }
    out = run_page(
        notebook,
        tmp_path,
        [
            {
                "origin": "https://evil.example",
                "reply": False,
                "data": {**tokens, "access_token": evil},
            },
            {"origin": live_server.url, "reply": False, "data": {"type": "other"}},
            {"origin": live_server.url, "reply": True, "data": {**tokens, "access_token": access}},
        ],
    )

    ready = out["posted"][0]
    assert ready == {
        "to": "opener",
        "origin": "*",
        "data": {"type": "lti-exchange:ready", "protocol": 1},
    }
    assert "Waiting for your tokens" in out["statuses"][0]
    assert "Ignored tokens sent by https://evil.example" in out["statuses"][1]
    assert len(out["requests"]) == 1  # only the exchange's message reached the server
    request = out["requests"][0]
    assert request["url"] == "/lti-exchange/tokens" and request["method"] == "POST"
    assert request["credentials"] == "same-origin"
    assert request["headers"]["X-XSRFToken"] == out["xsrf_token"]
    assert json.loads(request["body"]) == {
        "access_token": access,
        "refresh_token": "r-" + course,
        "service_url": live_server.url,
    }
    # The foreign sender learns that it was refused, not which exchange is accepted.
    refused = out["posted"][1]
    assert refused["to"] == "source" and refused["origin"] == "https://evil.example"
    assert refused["data"]["ok"] is False and refused["data"]["code"] == "wrong_exchange"
    assert "another exchange URL" in refused["data"]["message"]
    assert live_server.url not in json.dumps(refused) and evil not in json.dumps(refused)
    reply = out["posted"][2]
    assert reply["to"] == "source" and reply["origin"] == live_server.url
    assert reply["data"]["type"] == "lti-exchange:stored"
    assert reply["data"]["ok"] is True, reply
    assert (reply["data"]["course_id"], reply["data"]["role"]) == (course, "Learner")
    assert access not in json.dumps(reply)
    assert f"Connected: course {course} as Learner" in out["statuses"][-1]
    assert notebook.entry(course)["access_token"] == access


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the page script")
def test_handoff_script_reports_a_refusal_to_the_exchange(live_server, notebook, course, tmp_path):
    expired = live_server.issue_token("dana", course, "Learner", ttl=-3600)
    out = run_page(
        notebook,
        tmp_path,
        [
            {
                "origin": live_server.url,
                "reply": True,
                "data": {
                    "type": "lti-exchange:tokens",
                    "access_token": expired,
                    "service_url": live_server.url,
                },
            },
        ],
    )
    reply = out["posted"][-1]
    assert reply["origin"] == live_server.url
    assert reply["data"]["ok"] is False
    assert reply["data"]["code"] == "token_expired"
    assert "Your access token has expired" in reply["data"]["message"]
    assert notebook.entry(course) is None
