"""Key rings dated by their kids (keys mounted from a Kubernetes Secret) and the activation
delay of a new key (published and verifying at once, signing only once every replica has it)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lti_exchange.config import SettingsError, load_settings
from lti_exchange.keyring import KeyRing, created_from_kid
from lti_exchange.tokens.access import TOKEN_KEY_PREFIX, TokenService
from tests.conftest import BIN, ROOT

DAY = 24 * 3600


def kid_at(epoch: float, suffix: str = "0a1b2c3d") -> str:
    """A kid as ``KeyRing.generate`` makes it, for a key created at ``epoch``."""
    return f"{datetime.fromtimestamp(epoch, UTC):%Y%m%dT%H%M%S%f}-{suffix}"


def pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def secret_mount(directory: Path, files: dict[str, bytes]) -> Path:
    """The layout the kubelet gives a Secret volume: the files in a timestamped directory,
    ``..data`` pointing at it, and one symlink per key at the top, all written at one moment."""
    directory.mkdir()
    payload = directory / "..2026_12_02_10_15_00.000000001"
    payload.mkdir()
    for name, data in files.items():
        (payload / name).write_bytes(data)
    (directory / "..data").symlink_to(payload.name)
    for name in files:
        (directory / name).symlink_to(f"..data/{name}")
    same = time.time()
    for path in [payload, *payload.iterdir()]:
        os.utime(path, (same, same))
    return directory


def test_generated_kids_carry_their_creation_time(tmp_path):
    ring = KeyRing(tmp_path / "keys", TOKEN_KEY_PREFIX)
    before = time.time()
    key = ring.generate()
    assert before - 1 <= created_from_kid(key.kid) <= time.time() + 1
    assert created_from_kid("handmade") is None
    assert created_from_kid("20261302T101500-abc") is None  # no month 13: not a time
    assert (
        created_from_kid("20261202T101500Z-abc")
        == datetime(2026, 12, 2, 10, 15, tzinfo=UTC).timestamp()
    )


def test_keys_in_a_secret_mount_are_dated_by_their_kids_not_file_times(tmp_path):
    now = time.time()
    old, new = kid_at(now - 10 * DAY), kid_at(now - 2 * DAY)
    files = {f"{TOKEN_KEY_PREFIX}-{kid}.pem": pem() for kid in (new, old)}
    files[f"{TOKEN_KEY_PREFIX}-handmade.pem"] = pem()  # no time in its kid: its file's mtime
    mount = secret_mount(tmp_path / "secret", files)
    ring = KeyRing(mount, TOKEN_KEY_PREFIX)
    keys = {key.kid: key for key in ring.all()}
    assert keys[old].created == pytest.approx(now - 10 * DAY, abs=1)
    assert keys[new].created == pytest.approx(now - 2 * DAY, abs=1)
    handmade_mtime = (mount / f"{TOKEN_KEY_PREFIX}-handmade.pem").stat().st_mtime
    assert keys["handmade"].created == handmade_mtime
    assert [key.kid for key in ring.all()] == [old, new, "handmade"]  # oldest first
    # Superseded 2 days ago: kept with a 7-day overlap, pruned with a 1-day one.
    assert ring.prune(7 * DAY) == []
    assert ring.prune(1 * DAY) == [old]
    assert not (mount / f"{TOKEN_KEY_PREFIX}-{old}.pem").exists()


def add_key(directory: Path, created: float) -> str:
    kid = kid_at(created)
    directory.mkdir(exist_ok=True)
    (directory / f"{TOKEN_KEY_PREFIX}-{kid}.pem").write_bytes(pem())
    return kid


def tokens_for(tmp_path: Path, delay: int) -> tuple[KeyRing, TokenService]:
    settings = load_settings(
        {"LTI_EXCHANGE_DATA_DIR": str(tmp_path), "LTI_EXCHANGE_KEY_ACTIVATION_DELAY": str(delay)}
    )
    ring = KeyRing(settings.resolved_keys_dir, TOKEN_KEY_PREFIX, activation_delay=delay)
    return ring, TokenService(settings, ring)


def mint(tokens: TokenService) -> str:
    return tokens.mint(
        user_id=7,
        org_id=3,
        username="alice",
        course_code="intro",
        course_title="Intro",
        role="Learner",
        lms_user_id="lms-7",
        name="Alice",
        email="alice@example.edu",
    )


def test_a_new_key_verifies_at_once_but_signs_only_after_the_delay(tmp_path):
    ring, tokens = tokens_for(tmp_path, delay=300)
    old = add_key(ring.directory, time.time() - 3600)
    new = ring.generate().kid
    assert [key.kid for key in ring.all()] == [old, new]
    assert ring.active.kid == old  # the new key is too young to sign
    assert jwt.get_unverified_header(mint(tokens))["kid"] == old
    assert {key["kid"] for key in ring.jwks()["keys"]} == {old, new}  # published already
    signed_by_new = jwt.encode(
        jwt.decode(mint(tokens), options={"verify_signature": False}),
        ring.get(new).private_key,
        algorithm="RS256",
        headers={"kid": new},
    )
    assert tokens.verify(signed_by_new).username == "alice"  # another replica's token
    assert ring.signs_from(ring.get(new)) == pytest.approx(time.time() + 300, abs=5)
    assert ring.signing_key(now=time.time() + 301).kid == new
    # The old key is superseded only once the new one signs: the overlap counts from then.
    assert ring.prune(overlap_seconds=0) == []
    assert ring.prune(overlap_seconds=0, now=time.time() + 302) == [old]


def test_the_only_key_signs_at_once(tmp_path):
    ring, tokens = tokens_for(tmp_path, delay=300)
    first = ring.ensure_key()
    assert ring.active.kid == first.kid
    assert jwt.get_unverified_header(mint(tokens))["kid"] == first.kid


def test_with_only_young_keys_the_oldest_signs(tmp_path):
    ring, _tokens = tokens_for(tmp_path, delay=300)
    older = add_key(ring.directory, time.time() - 100)
    add_key(ring.directory, time.time() - 50)
    assert ring.active.kid == older


def test_the_delay_is_a_setting(tmp_path):
    assert load_settings({"LTI_EXCHANGE_DATA_DIR": str(tmp_path)}).key_activation_delay == 300
    with pytest.raises(SettingsError, match="KEY_ACTIVATION_DELAY"):
        load_settings({"LTI_EXCHANGE_KEY_ACTIVATION_DELAY": "-1"})


def keys_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LTI_EXCHANGE_KEYS_DIR": str(tmp_path / "keys"),
        "LTI_EXCHANGE_DATA_DIR": str(tmp_path / "scratch"),
    }
    return subprocess.run(
        [str(BIN / "lti-exchange"), "keys", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )


def test_keys_rotate_says_when_the_new_key_starts_signing(tmp_path):
    first = json.loads(keys_cli(tmp_path, "rotate", "--only", "token", "--json").stdout)["token"]
    assert first["signing_until_then"] == first["active"]  # the only key: signs now
    second = keys_cli(tmp_path, "rotate", "--only", "token").stdout
    assert "verifies now and signs from" in second
    assert f"until then {first['active']} signs" in second
    listed = json.loads(keys_cli(tmp_path, "list", "--json").stdout)
    signing = [row["kid"] for row in listed if row["kind"] == "token" and row["signing"]]
    assert signing == [first["active"]]
