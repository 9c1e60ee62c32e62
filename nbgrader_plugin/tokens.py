"""The user's token store: one entry per course (access token, refresh token, service URL).

A JSON file at ``$LTI_EXCHANGE_TOKEN_FILE`` (default ``~/.lti-exchange/tokens.json``), written
atomically with mode 0600. ``LTI_EXCHANGE_TOKEN`` (one access token) is honoured as well.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TOKEN_ENV = "LTI_EXCHANGE_TOKEN"
TOKEN_FILE_ENV = "LTI_EXCHANGE_TOKEN_FILE"
URL_ENV = "LTI_EXCHANGE_URL"


def default_token_file() -> Path:
    configured = os.environ.get(TOKEN_FILE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".lti-exchange" / "tokens.json"


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, read without checking the signature (the service checks it)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError) as exc:
        raise ValueError("not a JWT access token") from exc
    if not isinstance(claims, dict):
        raise ValueError("not a JWT access token")
    return claims


@dataclass
class TokenEntry:
    course_id: str
    access_token: str
    service_url: str | None = None
    refresh_token: str | None = None
    username: str | None = None
    role: str | None = None
    org_id: int | None = None
    expires_at: int | None = None

    @classmethod
    def from_access_token(
        cls, token: str, service_url: str | None = None, refresh_token: str | None = None
    ) -> TokenEntry:
        claims = unverified_claims(token)
        if not claims.get("course_id"):
            raise ValueError("the access token names no course")
        return cls(
            course_id=str(claims["course_id"]),
            access_token=token,
            service_url=service_url,
            refresh_token=refresh_token,
            username=claims.get("username"),
            role=claims.get("role"),
            org_id=claims.get("org_id"),
            expires_at=claims.get("exp"),
        )

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= time.time() + 30


class TokenStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_token_file()

    def load(self) -> dict[str, TokenEntry]:
        """Entries by course id: the file's, with ``LTI_EXCHANGE_TOKEN`` taking precedence."""
        entries: dict[str, TokenEntry] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(
                    f"The token store {self.path} is unreadable ({exc}); delete it and launch "
                    "the assignment from your LMS again."
                ) from exc
            for course_id, raw in (data.get("courses") or {}).items():
                fields = {k: raw.get(k) for k in TokenEntry.__dataclass_fields__}
                fields["course_id"] = course_id
                entries[course_id] = TokenEntry(**fields)
        env_token = os.environ.get(TOKEN_ENV, "").strip()
        if env_token:
            try:
                entry = TokenEntry.from_access_token(env_token, os.environ.get(URL_ENV))
            except ValueError as exc:
                raise ValueError(
                    f"The environment variable {TOKEN_ENV} holds no usable access token ({exc}). "
                    f"Unset it, or set it to the access token of your LMS launch or of "
                    "`lti-exchange token issue`."
                ) from exc
            entries[entry.course_id] = entry
        return entries

    def save(self, entry: TokenEntry) -> None:
        """Add or replace the entry for ``entry.course_id`` (atomic write, mode 0600)."""
        data: dict[str, Any] = {"courses": {}}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except ValueError:
                data = {"courses": {}}
        data.setdefault("courses", {})[entry.course_id] = {
            k: v for k, v in asdict(entry).items() if k != "course_id"
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
