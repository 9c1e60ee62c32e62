"""Our access tokens: RS256 JWTs signed by the key ring, ``kid`` in the header."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from lti_exchange.config import Settings
from lti_exchange.errors import Unauthenticated
from lti_exchange.keyring import KeyRing

AUDIENCE = "lti-exchange"
ALGORITHM = "RS256"
LEEWAY_SECONDS = 30
TOKEN_KEY_PREFIX = "token"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def revocation_ms(moment: datetime) -> int:
    """``moment`` in whole milliseconds since the epoch, rounded UP (integer arithmetic).

    Tokens whose ``iat_ms`` is below this were issued before the revocation (even within the
    same millisecond); tokens minted later carry an ``iat_ms`` of at least this value.
    """
    return -((_EPOCH - moment) // _MS)


def revocation_instant(moment: datetime) -> datetime:
    """``moment`` rounded up to the next whole millisecond: the value to store in
    ``Enrolment.tokens_not_before`` (exact on every backend: microseconds, no floats)."""
    return _EPOCH + revocation_ms(moment) * _MS


@dataclass(frozen=True)
class TokenClaims:
    """The verified claims of one access token: one user in one course."""

    sub: str
    org_id: int
    username: str
    course_code: str  # the nbgrader course id (the claim ``course_id``)
    role: str
    iat: int
    exp: int
    jti: str
    raw: dict[str, Any]

    @property
    def issued_ms(self) -> int:
        """When the token was issued, in milliseconds (``iat_ms``, else ``iat``)."""
        value = self.raw.get("iat_ms")
        return value if isinstance(value, int) else self.iat * 1000

    @property
    def user_id(self) -> int:
        return int(self.sub)


class TokenService:
    def __init__(self, settings: Settings, keyring: KeyRing) -> None:
        self.settings = settings
        self.keyring = keyring

    def mint(
        self,
        *,
        user_id: int,
        org_id: int,
        username: str,
        course_code: str,
        course_title: str | None,
        role: str,
        lms_user_id: str | None = None,
        name: str | None = None,
        email: str | None = None,
        ttl: int | None = None,
        now: int | None = None,
        not_before: datetime | None = None,
    ) -> str:
        """Sign a token for ``username`` in course ``course_code``, valid for ``ttl`` seconds.

        ``not_before`` is the enrolment's ``tokens_not_before``: the token's ``iat_ms`` is never
        below it, so a token minted right after a revocation (or with a clock behind the one
        that revoked) is not mistaken for a revoked one.
        """
        key = self.keyring.ensure_key()
        issued_at = time.time() if now is None else float(now)
        issued = int(issued_at)
        issued_ms = int(issued_at * 1000)
        if not_before is not None:
            issued_ms = max(issued_ms, revocation_ms(not_before))
        claims = {
            "iss": self.settings.token_issuer,
            "aud": AUDIENCE,
            "sub": str(user_id),
            "iat": issued,
            "exp": issued + (ttl or self.settings.access_token_ttl),
            "jti": uuid.uuid4().hex,
            "org_id": org_id,
            "username": username,
            "course_id": course_code,
            "course_title": course_title,
            "role": role,
            "lms_user_id": lms_user_id,
            "name": name,
            "email": email,
            # Milliseconds, so a revocation in the same second as the issue still applies.
            "iat_ms": issued_ms,
        }
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})

    def verify(self, token: str) -> TokenClaims:
        """Check signature, algorithm, audience, issuer and expiry; raise ``Unauthenticated``."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"The access token is malformed: {exc}. {RELAUNCH_HINT}") from exc
        if header.get("alg") != ALGORITHM:
            raise Unauthenticated(
                f"The access token is not signed with {ALGORITHM}. {RELAUNCH_HINT}"
            )
        key = self.keyring.get(str(header.get("kid", "")))
        if key is None:
            raise Unauthenticated(
                f"The access token was not signed by this service. {RELAUNCH_HINT}"
            )
        options: jwt.types.Options = {"require": ["exp", "iat", "sub", "aud", "iss"]}
        issuer = self.settings.token_issuer if self.settings.base_url else None
        try:
            claims = jwt.decode(
                token,
                key.private_key.public_key(),
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=issuer,
                leeway=LEEWAY_SECONDS,
                options=options,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated(
                f"Your access token has expired. {RELAUNCH_HINT}", code="token_expired"
            ) from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"The access token is invalid: {exc}. {RELAUNCH_HINT}") from exc
        try:
            return TokenClaims(
                sub=str(claims["sub"]),
                org_id=int(claims["org_id"]),
                username=str(claims["username"]),
                course_code=str(claims["course_id"]),
                role=str(claims["role"]),
                iat=int(claims["iat"]),
                exp=int(claims["exp"]),
                jti=str(claims.get("jti", "")),
                raw=claims,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise Unauthenticated(
                f"The access token lacks required claims. {RELAUNCH_HINT}"
            ) from exc


RELAUNCH_HINT = "Launch the assignment from your LMS again to get a new one."
