"""The per-process memory of verified access tokens (``tokens/access.py``): a remembered token is
answered without RSA, but never past its expiry, its key's pruning, or the memory's own bounds."""

from __future__ import annotations

import time
from typing import Any

import pytest

from lti_exchange.config import load_settings
from lti_exchange.errors import Unauthenticated
from lti_exchange.keyring import KeyRing
from lti_exchange.tokens.access import (
    LEEWAY_SECONDS,
    TOKEN_KEY_PREFIX,
    VERIFIED_TTL_SECONDS,
    TokenService,
    VerifiedTokens,
)


@pytest.fixture
def settings(tmp_path):
    return load_settings(environ={"LTI_EXCHANGE_DATA_DIR": str(tmp_path)})


@pytest.fixture
def ring(settings) -> KeyRing:
    return KeyRing(settings.resolved_keys_dir, TOKEN_KEY_PREFIX)


@pytest.fixture
def tokens(settings, ring) -> TokenService:
    return TokenService(settings, ring)


def mint(tokens: TokenService, username: str = "alice", **changes) -> str:
    arguments: dict[str, Any] = {
        "user_id": 7,
        "org_id": 3,
        "username": username,
        "course_code": "intro",
        "course_title": "Intro",
        "role": "Learner",
    }
    arguments.update(changes)
    return tokens.mint(**arguments)


def test_a_verified_token_is_remembered(tokens):
    token = mint(tokens)
    first = tokens.verify(token)
    assert tokens.verified.hits == 0 and len(tokens.verified) == 1
    again = tokens.verify(token)
    assert tokens.verified.hits == 1
    assert again == first and again.username == "alice"


def test_refused_tokens_are_not_remembered(tokens, ring):
    good = mint(tokens)
    header, payload, _signature = good.split(".")
    for bad in ("garbage", f"{header}.{payload}.AAAA", mint(tokens, now=int(time.time()) - 7200)):
        with pytest.raises(Unauthenticated):
            tokens.verify(bad)
    assert len(tokens.verified) == 0


def test_expiry_is_enforced_for_a_remembered_token(tokens):
    """Valid for about one more second (the leeway included): remembered, then refused."""
    token = mint(tokens, now=int(time.time()) - LEEWAY_SECONDS, ttl=2)
    assert tokens.verify(token).username == "alice"
    deadline = time.time() + 10
    while True:
        try:
            tokens.verify(token)
        except Unauthenticated as refused:
            assert refused.code == "token_expired"
            break
        assert time.time() < deadline, "an expired token was still accepted"
        time.sleep(0.2)
    assert token not in tokens.verified._entries


def test_a_remembered_token_of_a_pruned_key_is_refused_at_once(settings, tokens, ring):
    old_token = mint(tokens)
    worker = TokenService(settings, KeyRing(settings.resolved_keys_dir, TOKEN_KEY_PREFIX))
    assert worker.verify(old_token).username == "alice"
    assert worker.verify(old_token).username == "alice"
    assert worker.verified.hits == 1  # answered from memory

    ring.generate()
    assert ring.prune(overlap_seconds=0, now=time.time() + 10)
    with pytest.raises(Unauthenticated) as refused:
        worker.verify(old_token)
    assert "not signed by this service" in refused.value.message
    assert len(worker.verified) == 0


def test_the_memory_forgets_after_its_ttl(tokens):
    now = [1000.0]
    tokens.verified = VerifiedTokens(clock=lambda: now[0])
    token = mint(tokens)
    tokens.verify(token)
    now[0] += VERIFIED_TTL_SECONDS - 1
    tokens.verify(token)
    assert tokens.verified.hits == 1
    now[0] += 2  # past the TTL: verified in full again (and remembered anew)
    tokens.verify(token)
    assert tokens.verified.hits == 1
    assert len(tokens.verified) == 1


def test_the_memory_is_bounded(tokens):
    tokens.verified = VerifiedTokens(max_entries=3)
    minted = [mint(tokens, username=f"user{i}") for i in range(5)]
    for token in minted:
        tokens.verify(token)
    assert len(tokens.verified) == 3
    assert list(tokens.verified._entries) == minted[2:]  # the oldest went first
    assert tokens.verify(minted[0]).username == "user0"  # forgotten, still verifies in full
