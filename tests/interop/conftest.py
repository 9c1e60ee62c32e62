"""``lms``: the ``lti1p3platform`` platform (``library_platform.py``), started on a loopback port
and registered with the live service by ``lti-exchange platform add`` (click's runner)."""

from __future__ import annotations

import json

import pytest

from tests.functional.lti.conftest import lti_exchange
from tests.interop.library_platform import LibraryPlatform


@pytest.fixture(scope="module")
def lms(live_server):
    platform = LibraryPlatform(live_server.url).start()
    added = lti_exchange(
        live_server,
        "platform",
        "add",
        "--issuer",
        platform.issuer,
        "--client-id",
        platform.client_id,
        "--deployment-id",
        platform.deployment_id,
        "--auth-login-url",
        platform.auth_login_url,
        "--auth-token-url",
        platform.auth_token_url,
        "--key-set-url",
        platform.key_set_url,
        "--name",
        "lti1p3platform interop",
        "--json",
    )
    platform.org_id = json.loads(added.stdout)["org_id"]
    yield platform
    platform.stop()
