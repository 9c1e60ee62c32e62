"""Launches inside LMS iframes (no third-party cookies) and behind a reverse proxy."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.factories import registered_app


def drop_cookies(browser):
    """A form-field hook that empties the browser's cookie jar before the launch POST."""

    def hook(value):
        browser.cookies.clear()
        return value

    return hook


def test_cookie_less_launch_is_not_bound_to_the_browser_and_gets_no_tokens(platform, browser):
    """Without the cookie (and without platform storage) the id_token + state could come from
    any browser (login CSRF): a page offers a new window; JSON clients must keep the cookie.
    (tests/functional/lti/test_browser_binding.py and tests/browser/ cover the rest.)"""
    answer = platform.launch(browser, form={"state": drop_cookies(browser)}, accept_json=False)
    assert answer.status_code == 200, answer.text
    assert "Open the assignment in a new window" in answer.text
    assert "refresh_token" not in answer.text
    answer = platform.launch(browser, form={"state": drop_cookies(browser)})
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "lti_launch_unbound"


def test_cookie_less_launch_needs_the_state_of_its_own_login(platform, browser):
    other = platform.launch(browser.__class__(), accept_json=True)  # a complete, other launch
    assert other.status_code == 200
    answer = platform.launch(
        browser,
        form={"state": lambda _value: (browser.cookies.clear(), other.lti.form_fields["state"])[1]},
    )
    assert answer.status_code == 401, answer.text
    assert "State not found" in answer.json()["error"]["message"]


@pytest.mark.all_backends  # single-use state: the key-value store's atomic pop
def test_cookie_less_replay_is_refused(platform, browser):
    first = platform.launch(browser, form={"state": drop_cookies(browser)}, accept_json=False)
    assert first.status_code == 200
    assert "Open the assignment in a new window" in first.text
    browser.cookies.clear()
    again = platform.post_form(browser, first.lti)
    assert again.status_code == 401
    assert "nonce" in again.json()["error"]["message"]


@pytest.fixture
def proxied_app(tmp_path):
    def make(trusted_proxies: int, **env: str):
        return registered_app(
            tmp_path / f"data{trusted_proxies}", trusted_proxies=str(trusted_proxies), **env
        )

    return make


def login(client, target: str, **headers):
    return client.get(
        "/lti/login",
        query_string={
            "iss": "https://lms.example.edu",
            "client_id": "tool-1",
            "login_hint": "u1",
            "target_link_uri": target,
        },
        headers=headers,
    )


def test_behind_a_trusted_proxy_cookies_are_secure_and_partitioned(proxied_app):
    client = proxied_app(1, base_url="https://exchange.example.edu")
    answer = login(
        client,
        "https://exchange.example.edu/lti/launch",
        **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example.com"},
    )
    assert answer.status_code == 302, answer.get_data(as_text=True)
    redirect = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert redirect["redirect_uri"] == ["https://exchange.example.edu/lti/launch"]
    cookies = [c for c in answer.headers.getlist("Set-Cookie") if c.startswith("lti1p3-state-")]
    assert cookies, answer.headers
    for cookie in cookies:
        assert "Secure" in cookie and "SameSite=None" in cookie and "Partitioned" in cookie
        assert "HttpOnly" in cookie


def test_forwarded_headers_are_ignored_without_trusted_proxies(proxied_app):
    client = proxied_app(0, bind="localhost:80")
    answer = login(
        client,
        "https://exchange.example.edu/lti/launch",
        **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "exchange.example.edu"},
    )
    # The forged host is not believed: the target is not a URL of this tool.
    assert answer.status_code == 400
    assert "target_link_uri" in answer.get_data(as_text=True)
    plain = login(client, "http://localhost/lti/launch")
    assert plain.status_code == 302
    cookie = next(c for c in plain.headers.getlist("Set-Cookie") if c.startswith("lti1p3-state-"))
    assert "Secure" not in cookie
