"""RSA key rings kept as PEM files in a directory: the newest key signs, every kept key verifies.

Used for the token-signing keys (and, with another prefix, the LTI tool keys). Rotation adds a
key; keys superseded longer ago than the overlap window are pruned, so tokens they signed expire
before their key disappears.

- A key's kid starts with its creation time in UTC (``20261202T101500123456-<random hex>``), and
  that is the time the ring goes by: file times are no use for keys mounted from a Kubernetes
  Secret (symlinks, all with the time of the last update). Keys whose kid has no time (made by
  hand) fall back to their file's modification time.
- Activation delay: a key younger than ``activation_delay`` seconds is published and verifies
  at once but does not sign yet (unless no key is older), so every replica has read the new
  Secret before any token signed with it reaches one.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

# What a kid may look like before we look for its file (no path separators, no "..").
KID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
# At most one full re-read of the directory per this many seconds for unknown kids.
FORCED_RELOAD_INTERVAL = 1.0
# The creation time a kid starts with (``generate`` writes %Y%m%dT%H%M%S%f, UTC).
KID_TIME = re.compile(r"^([0-9]{8}T[0-9]{6})([0-9]{6})?Z?-")


def created_from_kid(kid: str) -> float | None:
    """The creation time (epoch s) a kid starts with, or None for a kid without one."""
    match = KID_TIME.match(kid)
    if match is None:
        return None
    try:
        moment = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return moment.timestamp() + int(match.group(2) or 0) / 1e6


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    created: float

    @cached_property
    def public_key(self) -> rsa.RSAPublicKey:
        """The public half, made once: a verification with a key object made for it pays
        OpenSSL's Montgomery set-up again (13 µs of a 45 µs RS256 check on the bench machine)."""
        return self.private_key.public_key()

    @property
    def public_jwk(self) -> dict:
        jwk = RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        jwk.update(kid=self.kid, alg="RS256", use="sig")
        return jwk


class KeyRing:
    """Keys named ``<prefix>-<kid>.pem`` in ``directory``; reloaded when the directory changes."""

    def __init__(
        self,
        directory: Path,
        prefix: str,
        clock: Callable[[], float] = time.monotonic,
        activation_delay: float = 0.0,
    ) -> None:
        self.directory = directory
        self.prefix = prefix
        self.activation_delay = activation_delay
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}
        self._mtime: float | None = None
        self._clock = clock
        self._last_forced: float | None = None
        self.file_reads = 0  # key files parsed so far (an unknown kid must not add to it)

    def _files(self) -> list[Path]:
        return sorted(self.directory.glob(f"{self.prefix}-*.pem"))

    def reload(self, force: bool = False) -> None:
        try:
            mtime = self.directory.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if not force and mtime == self._mtime and self._keys:
            return
        keys: dict[str, SigningKey] = {}
        for path in self._files():
            key = self._read(path)
            keys[key.kid] = key
        with self._lock:
            self._keys = keys
            self._mtime = mtime

    def _read(self, path: Path) -> SigningKey:
        kid = path.stem[len(self.prefix) + 1 :]
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        self.file_reads += 1
        created = created_from_kid(kid)
        return SigningKey(kid, private, path.stat().st_mtime if created is None else created)

    def ensure_key(self) -> SigningKey:
        """Return the key that signs now, generating the first one if the ring is empty."""
        self.reload()
        if not self._keys:
            self.generate()
            self.reload(force=True)
        return self.active

    def generate(self) -> SigningKey:
        """Add a new key (it signs once ``activation_delay`` has passed, or at once if it is the
        only key). Safe against concurrent callers."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        final = self.directory / f"{self.prefix}-{kid}.pem"
        tmp = self.directory / f".{final.name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        self.reload(force=True)
        return self._keys[kid]

    @property
    def active(self) -> SigningKey:
        """The key that signs now (see ``signing_key``)."""
        return self.signing_key()

    def signing_key(self, now: float | None = None) -> SigningKey:
        """The newest key older than the activation delay; the oldest key if none is."""
        keys = self.all()
        if not keys:
            raise RuntimeError(
                f"No {self.prefix} key in {self.directory}; run `lti-exchange keys rotate`."
            )
        now = time.time() if now is None else now
        ready = [key for key in keys if now >= self.signs_from(key)]
        return ready[-1] if ready else keys[0]

    def signs_from(self, key: SigningKey) -> float:
        """When ``key`` may start signing (epoch s): its creation plus the activation delay."""
        return key.created + self.activation_delay

    def get(self, kid: str) -> SigningKey | None:
        """The key ``kid``, or None. An unknown kid costs a stat, never a re-read of the ring.

        Tokens carry attacker-chosen kids, so an unknown one must stay cheap: the directory's
        mtime (checked on every call) notices keys added or pruned by another process; a key
        file that exists but slipped past the mtime check (same timestamp tick) is read alone;
        and full forced re-reads happen at most once per ``FORCED_RELOAD_INTERVAL``.
        """
        self.reload()  # a stat: notices keys pruned by another process, not only added ones
        key = self._keys.get(kid)
        if key is not None or not KID_PATTERN.fullmatch(kid):
            return key
        path = self.directory / f"{self.prefix}-{kid}.pem"
        if not path.is_file():
            return None
        if self._may_force():
            self.reload(force=True)
            return self._keys.get(kid)
        try:
            key = self._read(path)
        except (OSError, ValueError):  # pruned meanwhile, or not a key
            return None
        with self._lock:
            self._keys = {**self._keys, kid: key}
        return key

    def _may_force(self) -> bool:
        """True at most once per ``FORCED_RELOAD_INTERVAL`` (per process)."""
        now = self._clock()
        with self._lock:
            if self._last_forced is not None and now - self._last_forced < FORCED_RELOAD_INTERVAL:
                return False
            self._last_forced = now
            return True

    def all(self) -> list[SigningKey]:
        """Every key, oldest first."""
        self.reload()
        return sorted(self._keys.values(), key=lambda key: (key.created, key.kid))

    def prune(self, overlap_seconds: int, now: float | None = None) -> list[str]:
        """Delete keys superseded (their successor signing) more than ``overlap_seconds`` ago;
        return their kids."""
        now = time.time() if now is None else now
        keys = self.all()
        removed = []
        for older, newer in zip(keys, keys[1:], strict=False):
            if now - self.signs_from(newer) > overlap_seconds:
                (self.directory / f"{self.prefix}-{older.kid}.pem").unlink(missing_ok=True)
                removed.append(older.kid)
        if removed:
            self.reload(force=True)
        return removed

    def jwks(self) -> dict:
        return {"keys": [key.public_jwk for key in self.all()]}
