"""RSA key rings kept as PEM files in a directory: the newest key signs, every kept key verifies.

Used for the token-signing keys (and, with another prefix, the LTI tool keys). Rotation adds a
key; keys superseded longer ago than the overlap window are pruned, so tokens they signed expire
before their key disappears.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    created: float

    @property
    def public_jwk(self) -> dict:
        jwk = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, alg="RS256", use="sig")
        return jwk


class KeyRing:
    """Keys named ``<prefix>-<kid>.pem`` in ``directory``; reloaded when the directory changes."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}
        self._mtime: float | None = None

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
            kid = path.stem[len(self.prefix) + 1 :]
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(private, rsa.RSAPrivateKey)
            keys[kid] = SigningKey(kid, private, path.stat().st_mtime)
        with self._lock:
            self._keys = keys
            self._mtime = mtime

    def ensure_key(self) -> SigningKey:
        """Return the active key, generating the first one if the ring is empty."""
        self.reload()
        if not self._keys:
            self.generate()
            self.reload(force=True)
        return self.active

    def generate(self) -> SigningKey:
        """Add a new key (it becomes the active one). Safe against concurrent callers."""
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
        self.reload()
        if not self._keys:
            raise RuntimeError(
                f"No {self.prefix} key in {self.directory}; run `lti-exchange keys rotate`."
            )
        return self._keys[max(self._keys)]

    def get(self, kid: str) -> SigningKey | None:
        self.reload()  # a stat: notices keys pruned by another process, not only added ones
        key = self._keys.get(kid)
        if key is None:
            self.reload(force=True)
            key = self._keys.get(kid)
        return key

    def all(self) -> list[SigningKey]:
        self.reload()
        return [self._keys[k] for k in sorted(self._keys)]

    def prune(self, overlap_seconds: int, now: float | None = None) -> list[str]:
        """Delete keys superseded more than ``overlap_seconds`` ago; return their kids."""
        now = time.time() if now is None else now
        keys = self.all()
        removed = []
        for older, newer in zip(keys, keys[1:], strict=False):
            if now - newer.created > overlap_seconds:
                (self.directory / f"{self.prefix}-{older.kid}.pem").unlink(missing_ok=True)
                removed.append(older.kid)
        if removed:
            self.reload(force=True)
        return removed

    def jwks(self) -> dict:
        return {"keys": [key.public_jwk for key in self.all()]}
