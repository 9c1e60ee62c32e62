"""A flood of tokens naming key ids the server does not have, from unauthenticated clients.

Before the fix each such token re-read every key file: 19 requests a second raised normal
latency from 4 ms to 290 ms. Now an unknown ``kid`` costs a cached lookup (and at most one
re-read per second per worker), so a flood costs little CPU and every answer is a clean 401.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.security.conftest import worker_pids
from tests.support import assert_error

pytestmark = pytest.mark.one_backend

FLOOD = 300
CPU_BUDGET_SECONDS = 3.0  # 10 ms per request: ~10x what a refused token costs here


def segment(value: dict | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token_with_unknown_kid() -> str:
    header = {"alg": "RS256", "typ": "JWT", "kid": f"20990101T000000-{uuid.uuid4().hex[:8]}"}
    claims = {"sub": "1", "aud": "lti-exchange", "exp": 4102444800}
    return ".".join((segment(header), segment(claims), segment(os.urandom(256))))


def workers_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the given processes so far (from /proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def test_a_flood_of_unknown_key_ids_is_refused_cheaply(guarded_server):
    url = f"{guarded_server.url}/api/v1/courses/any-course/assignments"
    pids = worker_pids(guarded_server)
    before = workers_cpu_seconds(pids)

    def attempt(_index: int) -> requests.Response:
        headers = {"Authorization": f"Bearer {token_with_unknown_kid()}"}
        return requests.get(url, headers=headers, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(FLOOD)))
    spent = workers_cpu_seconds(pids) - before
    assert worker_pids(guarded_server) == pids  # no worker died or was replaced
    for answer in answers[:3]:
        assert_error(answer, 401)
    assert {a.status_code for a in answers} == {401}
    assert spent < CPU_BUDGET_SECONDS, f"{FLOOD} refused tokens cost {spent:.2f} s of CPU"
    assert requests.get(f"{guarded_server.url}/healthz", timeout=5).status_code == 200
