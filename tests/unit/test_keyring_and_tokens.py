"""The token-signing key ring and the access tokens it signs (no server, no database)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lti_exchange.config import load_settings
from lti_exchange.errors import Unauthenticated
from lti_exchange.keyring import KeyRing
from lti_exchange.tokens.access import AUDIENCE, TOKEN_KEY_PREFIX, TokenService


def make_settings(tmp_path, **env):
    environ = {"LTI_EXCHANGE_DATA_DIR": str(tmp_path)}
    environ.update({f"LTI_EXCHANGE_{k.upper()}": str(v) for k, v in env.items()})
    return load_settings(environ=environ)


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture
def ring(settings) -> KeyRing:
    return KeyRing(settings.resolved_keys_dir, TOKEN_KEY_PREFIX)


@pytest.fixture
def tokens(settings, ring) -> TokenService:
    return TokenService(settings, ring)


def mint(tokens: TokenService, **changes) -> str:
    arguments = {
        "user_id": 7,
        "org_id": 3,
        "username": "alice",
        "course_code": "intro",
        "course_title": "Intro",
        "role": "Learner",
        "lms_user_id": "lms-7",
        "name": "Alice",
        "email": "alice@example.edu",
    }
    arguments.update(changes)
    return tokens.mint(**arguments)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key_files(settings) -> list[str]:
    return sorted(p.name for p in settings.resolved_keys_dir.glob(f"{TOKEN_KEY_PREFIX}-*.pem"))


# --- key ring --------------------------------------------------------------------------------


def test_settings_put_the_keys_under_the_data_dir(tmp_path, settings):
    assert settings.resolved_keys_dir == (tmp_path / "keys").resolve()


def test_ensure_key_creates_one_key_once(settings, ring):
    assert not settings.resolved_keys_dir.exists() or key_files(settings) == []
    key = ring.ensure_key()
    assert key_files(settings) == [f"{TOKEN_KEY_PREFIX}-{key.kid}.pem"]
    assert ring.ensure_key().kid == key.kid
    assert key_files(settings) == [f"{TOKEN_KEY_PREFIX}-{key.kid}.pem"]
    assert isinstance(key.private_key, rsa.RSAPrivateKey)
    assert key.private_key.key_size >= 2048
    path = settings.resolved_keys_dir / f"{TOKEN_KEY_PREFIX}-{key.kid}.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in settings.resolved_keys_dir.iterdir() if p.name.endswith(".tmp")]


def test_another_ring_on_the_same_directory_sees_the_same_key(settings, ring):
    key = ring.ensure_key()
    other = KeyRing(settings.resolved_keys_dir, TOKEN_KEY_PREFIX)
    assert other.ensure_key().kid == key.kid
    assert len(key_files(settings)) == 1


def test_generate_makes_a_new_active_key(settings, ring):
    first = ring.ensure_key()
    second = ring.generate()
    assert second.kid != first.kid
    assert ring.active.kid == second.kid
    assert [k.kid for k in ring.all()] == [first.kid, second.kid]
    assert ring.get(first.kid) is not None
    assert len(key_files(settings)) == 2


def test_jwks_publishes_public_keys_only(ring):
    first = ring.ensure_key()
    second = ring.generate()
    jwks = ring.jwks()
    assert [k["kid"] for k in jwks["keys"]] == [first.kid, second.kid]
    for jwk in jwks["keys"]:
        assert jwk["alg"] == "RS256"
        assert jwk["use"] == "sig"
        assert jwk["kty"] == "RSA"
        assert jwk["n"] and jwk["e"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk), jwk
    # The published key really verifies what the ring's key signs.
    public = jwt.PyJWK(jwks["keys"][1]).key
    token = jwt.encode({"x": 1}, second.private_key, algorithm="RS256")
    assert jwt.decode(token, public, algorithms=["RS256"]) == {"x": 1}


def test_token_of_the_old_key_verifies_after_rotation(tokens, ring):
    old_token = mint(tokens)
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    ring.generate()
    new_token = mint(tokens)
    assert jwt.get_unverified_header(new_token)["kid"] == ring.active.kid != old_kid
    assert tokens.verify(old_token).username == "alice"
    assert tokens.verify(new_token).username == "alice"


def test_prune_removes_superseded_keys_and_their_tokens_stop_verifying(settings, tokens, ring):
    old_token = mint(tokens)
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    assert tokens.verify(old_token).course_code == "intro"
    new = ring.generate()
    new_token = mint(tokens)

    assert ring.prune(overlap_seconds=3600, now=time.time() + 10) == []
    assert tokens.verify(old_token).course_code == "intro"

    assert ring.prune(overlap_seconds=0, now=time.time() + 10) == [old_kid]
    assert ring.get(old_kid) is None
    assert [k.kid for k in ring.all()] == [new.kid]
    assert key_files(settings) == [f"{TOKEN_KEY_PREFIX}-{new.kid}.pem"]
    assert [k["kid"] for k in ring.jwks()["keys"]] == [new.kid]
    with pytest.raises(Unauthenticated) as refused:
        tokens.verify(old_token)
    assert refused.value.status == 401
    assert "not signed by this service" in refused.value.message
    assert tokens.verify(new_token).course_code == "intro"


def test_prune_never_removes_the_active_key(ring):
    only = ring.ensure_key()
    assert ring.prune(overlap_seconds=0, now=time.time() + 3600) == []
    assert ring.active.kid == only.kid


def test_a_pruned_key_stops_verifying_in_every_process(settings, tokens, ring):
    """Another worker's ring that already loaded the old key must not keep trusting it."""
    old_token = mint(tokens)
    worker_ring = KeyRing(settings.resolved_keys_dir, TOKEN_KEY_PREFIX)
    worker = TokenService(settings, worker_ring)
    assert worker.verify(old_token).username == "alice"

    ring.generate()
    assert ring.prune(overlap_seconds=0, now=time.time() + 10)
    with pytest.raises(Unauthenticated):
        worker.verify(old_token)
    assert worker.verify(mint(tokens)).username == "alice"


def test_an_empty_ring_has_no_active_key(settings, ring):
    with pytest.raises(RuntimeError, match="keys rotate"):
        ring.active  # noqa: B018


# --- tokens ----------------------------------------------------------------------------------


def test_mint_and_verify_round_trip(tokens, ring):
    before = int(time.time())
    token = mint(tokens, ttl=120)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["kid"] == ring.active.kid
    claims = tokens.verify(token)
    assert (claims.user_id, claims.org_id, claims.username) == (7, 3, "alice")
    assert (claims.course_code, claims.role) == ("intro", "Learner")
    assert before <= claims.iat <= int(time.time())
    assert claims.exp == claims.iat + 120
    assert claims.jti
    raw = claims.raw
    assert raw["aud"] == AUDIENCE
    assert raw["iss"] == "lti-exchange"
    assert raw["name"] == "Alice" and raw["email"] == "alice@example.edu"
    assert raw["lms_user_id"] == "lms-7" and raw["course_title"] == "Intro"
    assert mint(tokens) != mint(tokens)  # a fresh jti every time


def test_default_lifetime_comes_from_the_settings(tmp_path):
    settings = make_settings(tmp_path, access_token_ttl=90)
    service = TokenService(settings, KeyRing(settings.resolved_keys_dir, TOKEN_KEY_PREFIX))
    claims = service.verify(mint(service))
    assert claims.exp - claims.iat == 90


def test_expired_token(tokens):
    token = mint(tokens, now=int(time.time()) - 3600, ttl=60)
    with pytest.raises(Unauthenticated) as refused:
        tokens.verify(token)
    assert refused.value.code == "token_expired"
    assert "expired" in refused.value.message


def test_recently_expired_token_is_within_the_leeway(tokens):
    token = mint(tokens, now=int(time.time()) - 70, ttl=60)
    assert tokens.verify(token).username == "alice"


def _forge(claims: dict, key, kid: str, algorithm: str = "RS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "someone-else"},
        {"aud": ["other", "services"]},
        {"iss": None, "aud": None},
    ],
    ids=["audience", "audience-list", "no-audience"],
)
def test_wrong_audience(tokens, ring, change):
    claims = jwt.decode(mint(tokens), options={"verify_signature": False})
    for name, value in change.items():
        if value is None:
            claims.pop(name)
        else:
            claims[name] = value
    forged = _forge(claims, ring.active.private_key, ring.active.kid)
    with pytest.raises(Unauthenticated) as refused:
        tokens.verify(forged)
    assert refused.value.status == 401


def test_issuer_is_checked_when_a_base_url_is_set(tmp_path):
    settings = make_settings(tmp_path, base_url="https://exchange.example.edu/")
    keys = KeyRing(settings.resolved_keys_dir, TOKEN_KEY_PREFIX)
    service = TokenService(settings, keys)
    token = mint(service)
    assert service.verify(token).raw["iss"] == "https://exchange.example.edu"
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["iss"] = "https://evil.example.com"
    with pytest.raises(Unauthenticated, match="iss"):
        service.verify(_forge(claims, keys.active.private_key, keys.active.kid))


def test_other_rsa_key_is_refused(tokens, ring):
    claims = jwt.decode(mint(tokens), options={"verify_signature": False})
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stamp = ring.active.kid.rpartition("-")[0]
    for kid in (ring.active.kid, f"{stamp}-00000000"):
        with pytest.raises(Unauthenticated):
            tokens.verify(_forge(claims, other, kid))


def test_alg_none_is_refused(tokens, ring):
    claims = jwt.decode(mint(tokens), options={"verify_signature": False})
    header = b64url(json.dumps({"alg": "none", "kid": ring.active.kid}).encode())
    unsigned = f"{header}.{b64url(json.dumps(claims).encode())}."
    with pytest.raises(Unauthenticated, match="RS256"):
        tokens.verify(unsigned)


def test_hmac_with_the_public_key_is_refused(tokens, ring):
    claims = jwt.decode(mint(tokens), options={"verify_signature": False})
    claims["role"] = "Instructor"
    pem = ring.active.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": ring.active.kid}).encode())
    body = f"{header}.{b64url(json.dumps(claims).encode())}"
    signature = b64url(hmac.new(pem, body.encode(), hashlib.sha256).digest())
    with pytest.raises(Unauthenticated, match="RS256"):
        tokens.verify(f"{body}.{signature}")


def test_tampered_payload_is_refused(tokens):
    header, payload, signature = mint(tokens).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "Instructor"
    with pytest.raises(Unauthenticated, match="invalid"):
        tokens.verify(f"{header}.{b64url(json.dumps(claims).encode())}.{signature}")


@pytest.mark.parametrize("garbage", ["", "garbage", "a.b.c", "a.b", "....."])
def test_malformed_token(tokens, garbage):
    with pytest.raises(Unauthenticated) as refused:
        tokens.verify(garbage)
    assert refused.value.code == "unauthenticated"


@pytest.mark.parametrize("missing", ["org_id", "username", "course_id", "role", "sub", "exp"])
def test_token_without_a_required_claim(tokens, ring, missing):
    claims = jwt.decode(mint(tokens), options={"verify_signature": False})
    del claims[missing]
    with pytest.raises(Unauthenticated):
        tokens.verify(_forge(claims, ring.active.private_key, ring.active.kid))


# --- unknown kids stay cheap (an attacker picks the kid) ---------------------------------------


def forge_with_kid(kid: str) -> str:
    """A token whose header names ``kid``; its signature does not matter (never checked)."""
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64url(json.dumps({"sub": "1"}).encode())
    return f"{header}.{payload}.{b64url(b'x' * 256)}"


def test_a_thousand_unknown_kids_read_no_key_file(settings, tokens, ring):
    ring.ensure_key()
    ring.generate()
    reads = ring.file_reads
    kids = [f"20990101T000000{i:06d}-deadbeef" for i in range(990)]
    kids += ["../token-x", "..", "a/b", "", "x" * 500, "token", ".hidden", "a\x00b", "é", " "]
    for kid in kids:
        with pytest.raises(Unauthenticated):
            tokens.verify(forge_with_kid(kid))
    assert len(kids) == 1000
    assert ring.file_reads == reads


def test_forced_rereads_are_rate_limited_per_process(settings):
    """An existing key file that the directory mtime did not reveal is read alone; full re-reads
    of the directory happen at most once per interval."""
    now = [1000.0]
    ring = KeyRing(settings.resolved_keys_dir, TOKEN_KEY_PREFIX, clock=lambda: now[0])
    ring.ensure_key()
    directory = settings.resolved_keys_dir
    frozen = directory.stat()
    other = KeyRing(directory, TOKEN_KEY_PREFIX)
    added = [other.generate() for _ in range(3)]
    # Same mtime tick as before: the cheap check cannot see the new keys.
    os.utime(directory, ns=(frozen.st_atime_ns, frozen.st_mtime_ns))
    reads = ring.file_reads
    assert ring.get(added[0].kid).kid == added[0].kid  # forced: re-reads all 4 files
    assert ring.file_reads == reads + 4
    os.utime(directory, ns=(frozen.st_atime_ns, frozen.st_mtime_ns))
    for _ in range(100):
        assert ring.get(added[1].kid).kid == added[1].kid  # already loaded by the re-read
    assert ring.file_reads == reads + 4
    now[0] += 1.5
    assert ring.get("20990101T000000000000-00000000") is None  # no such file: no re-read
    assert ring.file_reads == reads + 4


def test_a_key_rotated_in_by_another_process_is_accepted_at_once(settings, tokens, ring):
    ring.ensure_key()
    for kid in (f"20990101T000000{i:06d}-deadbeef" for i in range(50)):  # spend the forced read
        with pytest.raises(Unauthenticated):
            tokens.verify(forge_with_kid(kid))
    other_process = TokenService(settings, KeyRing(settings.resolved_keys_dir, TOKEN_KEY_PREFIX))
    other_process.keyring.generate()
    token = mint(other_process)
    assert jwt.get_unverified_header(token)["kid"] == other_process.keyring.active.kid
    assert tokens.verify(token).username == "alice"


def test_a_key_file_in_the_same_mtime_tick_is_read_alone_when_rereads_are_spent(settings):
    now = [1000.0]
    ring = KeyRing(settings.resolved_keys_dir, TOKEN_KEY_PREFIX, clock=lambda: now[0])
    ring.ensure_key()
    assert ring._may_force()  # spend this interval's forced re-read
    directory = settings.resolved_keys_dir
    frozen = directory.stat()
    new = KeyRing(directory, TOKEN_KEY_PREFIX).generate()
    os.utime(directory, ns=(frozen.st_atime_ns, frozen.st_mtime_ns))
    reads = ring.file_reads
    assert ring.get(new.kid).kid == new.kid
    assert ring.file_reads == reads + 1


def test_tokens_minted_after_a_revocation_are_not_revoked():
    """The stored revocation instant is rounded up to a whole millisecond; a token minted with
    that enrolment's not-before carries an iat_ms at or after it."""
    from datetime import UTC, datetime

    from lti_exchange.tokens.access import revocation_instant, revocation_ms

    moment = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert revocation_instant(moment) == datetime(2030, 1, 2, 3, 4, 5, 124000, tzinfo=UTC)
    assert revocation_ms(moment) == revocation_ms(revocation_instant(moment))
    exact = datetime(2030, 1, 2, 3, 4, 5, 124000, tzinfo=UTC)
    assert revocation_instant(exact) == exact
    assert revocation_ms(exact) == int(exact.timestamp()) * 1000 + 124


def test_mint_never_issues_before_the_enrolment_not_before(settings, tokens):
    from datetime import UTC, datetime, timedelta

    from lti_exchange.tokens.access import revocation_ms

    ahead = datetime.now(UTC) + timedelta(seconds=5)  # a revoking clock ahead of ours
    claims = tokens.verify(mint(tokens, not_before=ahead))
    assert claims.issued_ms == revocation_ms(ahead)
    assert claims.iat <= time.time() + 1  # iat itself stays honest
