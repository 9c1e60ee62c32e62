"""The plugin's HTTP session: the environment's proxy and CA settings are read once for the
exchange's URL, and nothing from the environment (``~/.netrc``) replaces the bearer token."""

from __future__ import annotations

import requests

from nbgrader_plugin.client import ExchangeClient, environment_session
from nbgrader_plugin.tokens import TokenEntry

SERVICE = "https://exchange.example.edu"


def prepared(client: ExchangeClient) -> requests.PreparedRequest:
    request = requests.Request("GET", client.base + "me", headers=client._headers())
    return client.session.prepare_request(request)


def test_a_netrc_entry_for_the_host_does_not_replace_the_token(tmp_path, monkeypatch):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine exchange.example.edu login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    entry = TokenEntry(course_id="c1", access_token="the-token", service_url=SERVICE)
    client = ExchangeClient(SERVICE, entry)
    assert prepared(client).headers["Authorization"] == "Bearer the-token"
    # (a plain requests session would send the netrc's Basic credentials instead)
    plain = requests.Session().prepare_request(
        requests.Request("GET", SERVICE + "/api/v1/me", headers={"Authorization": "Bearer x"})
    )
    assert plain.headers["Authorization"].startswith("Basic ")


def test_proxy_and_ca_settings_are_read_once_for_the_service(tmp_path, monkeypatch):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.edu:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = environment_session(SERVICE)
    assert session.trust_env is False
    assert session.proxies["https"] == "http://proxy.example.edu:3128"
    assert session.verify == str(bundle)

    monkeypatch.setenv("NO_PROXY", "example.edu")
    assert "https" not in environment_session(SERVICE).proxies
