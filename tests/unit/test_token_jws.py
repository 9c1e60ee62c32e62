"""``tokens/jws.py`` against PyJWT: on a corpus of valid, forged and broken tokens our verifier
accepts exactly what ``jwt.decode`` (with the options the service used to pass it) accepts,
except for the listed shapes it refuses on purpose (stricter: never accepted by mistake)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from lti_exchange.config import load_settings
from lti_exchange.errors import Unauthenticated
from lti_exchange.keyring import KeyRing
from lti_exchange.tokens.access import AUDIENCE, LEEWAY_SECONDS, TOKEN_KEY_PREFIX, TokenService


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(params=["", "https://exchange.example.edu"], ids=["no-base-url", "base-url"])
def service(request, tmp_path) -> TokenService:
    environ = {"LTI_EXCHANGE_DATA_DIR": str(tmp_path)}
    if request.param:
        environ["LTI_EXCHANGE_BASE_URL"] = request.param
    settings = load_settings(environ=environ)
    service = TokenService(settings, KeyRing(settings.resolved_keys_dir, TOKEN_KEY_PREFIX))
    service.keyring.ensure_key()
    return service


def claims(service: TokenService, **changes) -> dict:
    now = int(time.time())  # (not at import: the suite can run for many minutes before this)
    base = {
        "iss": service.settings.token_issuer,
        "aud": AUDIENCE,
        "sub": "7",
        "iat": now,
        "exp": now + 600,
        "jti": "abc",
        "org_id": 3,
        "username": "alice",
        "course_id": "intro",
        "role": "Learner",
        "iat_ms": now * 1000,
    }
    for name, value in changes.items():
        if value is _DROP:
            base.pop(name)
        else:
            base[name] = value
    return base


_DROP = object()


def signed(service: TokenService, payload: dict, **header) -> str:
    key = service.keyring.active
    headers = {"kid": key.kid, **header}
    return jwt.encode(payload, key.private_key, algorithm="RS256", headers=headers)


def raw(header: dict, payload: dict, signature: bytes = b"x" * 256) -> str:
    return ".".join(
        [
            b64url(json.dumps(header).encode()),
            b64url(json.dumps(payload).encode()),
            b64url(signature),
        ]
    )


def sign_raw(service: TokenService, header: dict, payload: dict) -> str:
    """Really signed by the ring's key, whatever the header and payload say."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    key = service.keyring.active.private_key
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def claim_cases() -> dict[str, dict[str, Any]]:
    """Each case's changes to the valid claims, relative to the current time."""
    now = int(time.time())
    return {
        "valid": {},
        "exp-in-leeway": {"exp": now - LEEWAY_SECONDS + 5},
        "expired": {"exp": now - LEEWAY_SECONDS - 5},
        "exp-float": {"exp": now + 600.5},
        "exp-string": {"exp": str(now + 600)},
        "exp-missing": {"exp": _DROP},
        "exp-null": {"exp": None},
        "iat-future": {"iat": now + LEEWAY_SECONDS + 60},
        "iat-future-in-leeway": {"iat": now + 5},
        "iat-missing": {"iat": _DROP},
        "nbf-future": {"nbf": now + LEEWAY_SECONDS + 60},
        "nbf-past": {"nbf": now - 10},
        "sub-int": {"sub": 7},
        "sub-missing": {"sub": _DROP},
        "jti-int": {"jti": 5},
        "aud-list-with-us": {"aud": ["other", AUDIENCE]},
        "aud-list-without-us": {"aud": ["other", "services"]},
        "aud-other": {"aud": "someone-else"},
        "aud-empty-list": {"aud": []},
        "aud-int": {"aud": 5},
        "aud-missing": {"aud": _DROP},
        "iss-other": {"iss": "https://evil.example.com"},
        "iss-missing": {"iss": _DROP},
        "org-missing": {"org_id": _DROP},
    }


# Shapes PyJWT accepts that our verifier refuses on purpose (the service never makes them).
STRICTER = {"exp-string", "iss-int", "padded", "header-extra-b64"}


def ours(service: TokenService, token: str) -> bool:
    try:
        service.verify(token)
    except Unauthenticated:
        return False
    return True


def pyjwt(service: TokenService, token: str) -> bool:
    """What the service did before ``tokens/jws.py``: the header's kid chooses the key."""
    issuer = service.settings.token_issuer if service.settings.base_url else None
    try:
        key = service.keyring.get(str(jwt.get_unverified_header(token).get("kid", "")))
        if key is None:
            return False
        payload = jwt.decode(
            token,
            key.private_key.public_key(),
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except jwt.PyJWTError:
        return False
    return {"org_id", "username", "course_id", "role"} <= set(payload)


def corpus(service: TokenService) -> dict[str, str]:
    tokens = {name: signed(service, claims(service, **c)) for name, c in claim_cases().items()}
    valid = tokens["valid"]
    head, body, signature = valid.split(".")
    tampered = claims(service, role="Instructor")
    key = service.keyring.active
    tokens.update(
        {
            "iss-int": sign_raw(service, {"alg": "RS256", "kid": key.kid}, claims(service, iss=5)),
            "tampered": f"{head}.{b64url(json.dumps(tampered).encode())}.{signature}",
            "signature-cut": f"{head}.{body}.{signature[:-8]}",
            "signature-empty": f"{head}.{body}.",
            "padded": f"{head}.{body}.{signature}" + "=" * (-len(signature) % 4),
            "two-segments": f"{head}.{body}",
            "four-segments": f"{valid}.{signature}",
            "junk-character": f"{head}.{body}!.{signature}",
            "alg-none": raw({"alg": "none", "kid": key.kid}, claims(service), b""),
            "alg-hs256": raw({"alg": "HS256", "kid": key.kid}, claims(service)),
            "alg-missing": raw({"kid": key.kid}, claims(service)),
            "kid-unknown": signed(service, claims(service), kid="20990101T000000000000-beef"),
            "kid-int": sign_raw(service, {"alg": "RS256", "kid": 5}, claims(service)),
            "kid-missing": sign_raw(service, {"alg": "RS256"}, claims(service)),
            "header-extra-b64": sign_raw(
                service, {"alg": "RS256", "kid": key.kid, "b64": True}, claims(service)
            ),
            "crit": signed(service, claims(service), crit=["exp"]),
            "header-list": f"{b64url(b'[1]')}.{body}.{signature}",
            "header-not-json": f"{b64url(b'{nope')}.{body}.{signature}",
            "payload-list": sign_raw(service, {"alg": "RS256", "kid": key.kid}, [1, 2]),  # type: ignore[arg-type]
            "deep-header": f"{b64url(b'[' * 5000)}.{body}.{signature}",
            "empty": "",
            "garbage": "garbage",
        }
    )
    return tokens


def test_our_verifier_agrees_with_pyjwt(service):
    disagreements = {}
    for name, token in corpus(service).items():
        expected = pyjwt(service, token) and name not in STRICTER
        if ours(service, token) != expected:
            disagreements[name] = {"ours": ours(service, token), "pyjwt": pyjwt(service, token)}
    assert disagreements == {}
    assert ours(service, corpus(service)["valid"])  # the corpus is not all refusals


def test_the_stricter_shapes_are_ones_pyjwt_accepts(service):
    """Each STRICTER case really differs from PyJWT (else it belongs in the agreement test)."""
    tokens = corpus(service)
    for name in STRICTER:
        # (PyJWT checks the type of iss only when it checks the issuer)
        assert pyjwt(service, tokens[name]) or (name == "iss-int" and service.settings.base_url)
        assert not ours(service, tokens[name]), name


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("expired", "token_expired", "expired"),
        ("alg-none", "unauthenticated", "RS256"),
        ("alg-hs256", "unauthenticated", "RS256"),
        ("tampered", "unauthenticated", "invalid"),
        ("kid-unknown", "unauthenticated", "not signed by this service"),
        ("garbage", "unauthenticated", "malformed"),
        ("aud-other", "unauthenticated", "Audience"),
    ],
)
def test_refusals_say_why(service, name, code, words):
    with pytest.raises(Unauthenticated) as refused:
        service.verify(corpus(service)[name])
    assert refused.value.status == 401
    assert refused.value.code == code
    assert words in refused.value.message
    assert "Launch the assignment from your LMS again" in refused.value.message
