"""Verifying our own RS256 access tokens, strictly and cheaply (no Flask, no database).

PyJWT spends ~0.2 ms of Python per token on checks we do not need (each segment's alphabet
character by character, detached payloads, algorithm negotiation), ten times the RSA
verification itself. The tokens verified here are only ever the service's own: compact JWS,
``alg`` RS256, a ``kid``, unpadded base64url. This module accepts exactly that and refuses
everything else; the claim checks follow PyJWT's ``decode`` (required claims, ``exp`` with
leeway, ``iat``/``nbf`` not in the future, audience, issuer, ``sub``/``jti`` strings), and
``tests/unit/test_token_jws.py`` checks both agree on a corpus of forged and broken tokens.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ALGORITHM = "RS256"
REQUIRED = ("exp", "iat", "sub", "aud", "iss")
# Three unpadded base64url segments, nothing else (ASCII only); an empty signature is let through
# to be refused by its header (``alg: none``) or the signature check.
_COMPACT = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")
_PADDING = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


class TokenError(ValueError):
    """A refused token; ``kind``: malformed, algorithm, signature, expired or claims."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def split(token: str) -> tuple[str, str, str]:
    """The three segments of a compact JWS, or ``TokenError("malformed")``."""
    match = _COMPACT.fullmatch(token)
    if match is None:
        raise TokenError("malformed", "it is not three base64url segments separated by dots")
    return match.group(1), match.group(2), match.group(3)


def _decode(segment: str) -> bytes:
    if len(segment) % 4 == 1:
        raise TokenError("malformed", "a segment has an impossible base64url length")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("malformed", "a segment is not base64url") from exc


def json_object(segment: str, name: str) -> dict[str, Any]:
    """A segment decoded as a JSON object."""
    try:
        value = json.loads(_decode(segment))
    except (ValueError, RecursionError) as exc:
        raise TokenError("malformed", f"its {name} is not JSON") from exc
    if not isinstance(value, dict):
        raise TokenError("malformed", f"its {name} is not a JSON object")
    return value


def header(segment: str) -> dict[str, Any]:
    """The JOSE header: RS256, a string ``kid``, no extensions (``crit``, ``b64``)."""
    value = json_object(segment, "header")
    if value.get("alg") != ALGORITHM:
        raise TokenError("algorithm", f"it is not signed with {ALGORITHM}")
    if "crit" in value or "b64" in value:
        raise TokenError("malformed", "its header asks for extensions this service does not use")
    if not isinstance(value.get("kid"), str):
        raise TokenError("malformed", "its header names no key (kid)")
    return value


def check_signature(public_key: rsa.RSAPublicKey, head: str, body: str, signature: str) -> None:
    """RSASSA-PKCS1-v1_5 with SHA-256 over ``head.body`` (RFC 7518 §3.3)."""
    try:
        public_key.verify(_decode(signature), f"{head}.{body}".encode("ascii"), _PADDING, _SHA256)
    except InvalidSignature as exc:
        raise TokenError("signature", "Signature verification failed") from exc


def _integer(claims: dict[str, Any], name: str) -> int:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError("claims", f"the claim {name} must be an integer")
    try:
        return int(value)
    except (ValueError, OverflowError) as exc:  # NaN, infinity
        raise TokenError("claims", f"the claim {name} must be an integer") from exc


def check_claims(
    claims: dict[str, Any], *, audience: str, issuer: str | None, now: float, leeway: float
) -> None:
    """PyJWT's checks for ``require=REQUIRED``, ``audience``, ``issuer`` and ``leeway``."""
    for name in REQUIRED:
        if claims.get(name) is None:
            raise TokenError("claims", f'Token is missing the "{name}" claim')
    if _integer(claims, "exp") <= now - leeway:
        raise TokenError("expired", "Signature has expired")
    if _integer(claims, "iat") > now + leeway:
        raise TokenError("claims", "The token is not yet valid (iat)")
    if "nbf" in claims and _integer(claims, "nbf") > now + leeway:
        raise TokenError("claims", "The token is not yet valid (nbf)")
    if not isinstance(claims["sub"], str):
        raise TokenError("claims", "Subject must be a string")
    if "jti" in claims and not isinstance(claims["jti"], str):
        raise TokenError("claims", "JWT ID must be a string")
    audiences = claims["aud"]
    if isinstance(audiences, str):
        audiences = [audiences]
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise TokenError("claims", "Invalid claim format in token (aud)")
    if audience not in audiences:
        raise TokenError("claims", "Audience doesn't match")
    if not isinstance(claims["iss"], str):
        raise TokenError("claims", "Payload Issuer (iss) must be a string")
    if issuer is not None and claims["iss"] != issuer:
        raise TokenError("claims", "Invalid issuer (iss)")
