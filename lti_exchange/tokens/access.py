"""Our access tokens: RS256 JWTs signed by the key ring, ``kid`` in the header.

Tokens are signed with PyJWT and verified by ``tokens/jws.py`` (strict; about 0.05 ms of CPU
where PyJWT took 0.3 ms). Every API request carries a token, so each process also remembers the
tokens it verified (:class:`VerifiedTokens`). A remembered token is trusted again only while its
signing key is still in the ring (a pruned key stops its tokens at once, in every process),
before its ``exp`` (plus the usual leeway), and for at most ``VERIFIED_TTL_SECONDS``. Revocation
is never cached: ``services/authorisation.py`` reads the live enrolment on every request.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from lti_exchange.config import Settings
from lti_exchange.errors import Unauthenticated
from lti_exchange.keyring import KeyRing
from lti_exchange.tokens import jws

AUDIENCE = "lti-exchange"
ALGORITHM = "RS256"
LEEWAY_SECONDS = 30
TOKEN_KEY_PREFIX = "token"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Per-process memory of verified tokens: how many, and for how long at most.
VERIFIED_MAX_ENTRIES = 1024
VERIFIED_TTL_SECONDS = 30.0


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


@dataclass(frozen=True)
class _Verified:
    claims: TokenClaims
    kid: str
    trusted_until: float  # time.time(): the earlier of exp + leeway and the cache TTL


class VerifiedTokens:
    """Tokens this process verified lately (bounded, oldest out first), by exact token string.

    Only tokens that passed full verification get in, so an attacker cannot fill it with junk;
    a signature check is a pure function of the token and the key, so a remembered answer is the
    same answer, as long as the key is still in the ring and the token has not expired.
    """

    def __init__(
        self,
        max_entries: int = VERIFIED_MAX_ENTRIES,
        ttl_seconds: float = VERIFIED_TTL_SECONDS,
        clock=time.time,
    ) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Verified] = OrderedDict()
        self.hits = 0

    def get(self, token: str) -> _Verified | None:
        """The remembered verification, if it is still within its bounds."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if self._clock() >= entry.trusted_until:
            with self._lock:
                self._entries.pop(token, None)
            return None
        self.hits += 1
        return entry

    def put(self, token: str, claims: TokenClaims, kid: str) -> None:
        until = min(claims.exp + LEEWAY_SECONDS, self._clock() + self.ttl_seconds)
        with self._lock:
            self._entries[token] = _Verified(claims, kid, until)
            self._entries.move_to_end(token)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, token: str) -> None:
        with self._lock:
            self._entries.pop(token, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class TokenService:
    def __init__(self, settings: Settings, keyring: KeyRing) -> None:
        self.settings = settings
        self.keyring = keyring
        self.verified = VerifiedTokens()

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
        """Check signature, algorithm, audience, issuer and expiry; raise ``Unauthenticated``.

        A token this process verified lately is answered from ``self.verified`` (module
        docstring) once its key is found still in the ring: a stat, no RSA, no parsing.
        """
        remembered = self.verified.get(token)
        if remembered is not None:
            if self.keyring.get(remembered.kid) is not None:
                return remembered.claims
            self.verified.forget(token)  # its key was pruned: verify in full (and refuse)
        claims, kid = self._verify_fully(token)
        self.verified.put(token, claims, kid)
        return claims

    def _verify_fully(self, token: str) -> tuple[TokenClaims, str]:
        """Signature (the ``kid``'s key in the ring), then the claims (``tokens/jws.py``)."""
        try:
            head, body, signature = jws.split(token)
            kid = str(jws.header(head)["kid"])
        except jws.TokenError as exc:
            raise _refusal(exc) from exc
        key = self.keyring.get(kid)
        if key is None:
            raise Unauthenticated(
                f"The access token was not signed by this service. {RELAUNCH_HINT}"
            )
        issuer = self.settings.token_issuer if self.settings.base_url else None
        try:
            jws.check_signature(key.public_key, head, body, signature)
            claims = jws.json_object(body, "payload")
            jws.check_claims(
                claims, audience=AUDIENCE, issuer=issuer, now=time.time(), leeway=LEEWAY_SECONDS
            )
        except jws.TokenError as exc:
            raise _refusal(exc) from exc
        try:
            verified = TokenClaims(
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
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise Unauthenticated(
                f"The access token lacks required claims. {RELAUNCH_HINT}"
            ) from exc
        return verified, kid


def _refusal(error: jws.TokenError) -> Unauthenticated:
    if error.kind == "expired":
        return Unauthenticated(
            f"Your access token has expired. {RELAUNCH_HINT}", code="token_expired"
        )
    if error.kind == "algorithm":
        return Unauthenticated(f"The access token is not signed with {ALGORITHM}. {RELAUNCH_HINT}")
    if error.kind == "malformed":
        return Unauthenticated(f"The access token is malformed: {error}. {RELAUNCH_HINT}")
    return Unauthenticated(f"The access token is invalid: {error}. {RELAUNCH_HINT}")


RELAUNCH_HINT = "Launch the assignment from your LMS again to get a new one."
