"""Fixtures for LTI launches against the live service.

- ``platform``: one ``SimulatedPlatform`` per live server (so per backend), registered with
  ``lti-exchange platform add`` (through click's runner) under a unique issuer with two deployment
  ids; its ``org_id`` is the organisation the registration created.
- ``make_platform``: more platforms for one test (a second organisation, a rotating platform),
  started, registered and stopped after the test.
- ``browser``: a fresh cookie-keeping ``requests.Session`` (one browser).
"""

from __future__ import annotations

import json

import pytest
import requests
from click.testing import CliRunner, Result

from lti_exchange.cli import main
from tests.lms.platform import SimulatedPlatform


def lti_exchange(live_server, *args: str, expect: int | None = 0) -> Result:
    """The ``lti-exchange`` command with the live server's settings, run through click's runner.

    (``start_server`` runs ``lti-exchange db upgrade`` as a real process for every server.)
    """
    done = CliRunner(env=live_server.settings_env()).invoke(main, list(args))
    if expect is not None:
        assert done.exit_code == expect, (
            f"lti-exchange {' '.join(args)} exited {done.exit_code}, expected {expect}:\n"
            f"{done.stdout}\n{done.stderr}\n{done.exception!r}"
        )
    return done


def platform_add_args(
    platform: SimulatedPlatform,
    client_id: str,
    deployment_ids: list[str],
    name: str,
    notebook_url_template: str | None = None,
) -> list[str]:
    """``lti-exchange platform add --json`` with ``platform``'s URLs."""
    args = [
        "platform",
        "add",
        "--issuer",
        platform.issuer,
        "--client-id",
        client_id,
        "--auth-login-url",
        platform.auth_login_url,
        "--auth-token-url",
        platform.auth_token_url,
        "--key-set-url",
        platform.key_set_url,
        "--name",
        name,
        "--json",
    ]
    for deployment_id in deployment_ids:
        args += ["--deployment-id", deployment_id]
    if notebook_url_template is not None:
        args += ["--notebook-url-template", notebook_url_template]
    return args


def register_platform(
    live_server,
    platform: SimulatedPlatform,
    *,
    client_id: str | None = None,
    deployment_ids: list[str] | None = None,
    name: str | None = None,
    notebook_url_template: str | None = None,
) -> dict:
    """Register ``platform`` (one of its client ids) with the real CLI; return the ``--json``."""
    client_id = client_id or platform.client_id
    deployment_ids = deployment_ids or platform.clients[client_id]
    name = name or f"{platform.name} ({client_id})"
    args = platform_add_args(platform, client_id, deployment_ids, name, notebook_url_template)
    registered = json.loads(lti_exchange(live_server, *args).stdout)
    assert isinstance(registered["org_id"], int), registered
    assert registered["issuer"] == platform.issuer, registered
    assert registered["client_id"] == client_id, registered
    assert sorted(registered["deployment_ids"]) == sorted(deployment_ids), registered
    return registered


@pytest.fixture(scope="session")
def platform(live_server):
    lms = SimulatedPlatform(live_server.url, deployment_ids=("1", "2")).start()
    lms.org_id = register_platform(live_server, lms)["org_id"]
    yield lms
    lms.stop()


@pytest.fixture
def make_platform(live_server):
    started: list[SimulatedPlatform] = []

    def make(**kwargs) -> SimulatedPlatform:
        lms = SimulatedPlatform(live_server.url, **kwargs).start()
        started.append(lms)
        lms.org_id = register_platform(live_server, lms)["org_id"]
        return lms

    yield make
    for lms in started:
        lms.stop()


@pytest.fixture
def browser():
    with requests.Session() as session:
        yield session
