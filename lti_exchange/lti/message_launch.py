"""The launch validator: pylti1p3's, with the gaps of pylti1p3 2.0.0 closed.

Each override says which gap it closes (see shared research notes, lti13.md section 6).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import jwt
from pylti1p3.contrib.flask import FlaskMessageLaunch
from pylti1p3.exception import LtiException

from lti_exchange.lti.store import DatabaseStore

NONCE_USED_TTL = 24 * 3600
JWKS_CACHE_SECONDS = 3600
JWKS_REFETCHES_PER_MINUTE = 10


class HardenedMessageLaunch(FlaskMessageLaunch):
    """A ``FlaskMessageLaunch`` with single-use nonces, ``aud``/``azp`` rules, clock leeway, a
    maximum ``iat`` age, JWKS re-download on an unknown ``kid``, cookie-less state recovery and
    registration errors that are 4xx instead of 500."""

    store: DatabaseStore
    cookie_bound: bool = False  # set by validate_state: the state cookie came with the launch
    leeway: int = 60
    iat_max_age: int = 600
    trusted_audiences: frozenset[str] = frozenset()

    def configure(
        self, store: DatabaseStore, leeway: int, iat_max_age: int, trusted_audiences: set[str]
    ) -> HardenedMessageLaunch:
        self.store = store
        self.leeway = leeway
        self.iat_max_age = iat_max_age
        self.trusted_audiences = frozenset(trusted_audiences)
        self.set_public_key_caching(self._session_service.data_storage, JWKS_CACHE_SECONDS)
        return self

    # -- audience ----------------------------------------------------------------------------
    def _audiences(self) -> list[str]:
        aud = self._get_jwt_body().get("aud")
        if isinstance(aud, str):
            return [aud]
        if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            return aud
        raise LtiException('"aud" must be a string or a list of strings')

    def get_client_id(self) -> str:
        """pylti1p3 takes ``aud[0]``; with several audiences the client is ``azp``."""
        audiences = self._audiences()
        azp = self._get_jwt_body().get("azp")
        if len(audiences) > 1 and isinstance(azp, str) and azp in audiences:
            return azp
        return audiences[0] if audiences else ""

    def validate_registration(self) -> HardenedMessageLaunch:
        """Check ``aud``/``azp`` (pylti1p3 ignores ``azp`` and extra audiences) and turn lookup
        failures into ``LtiException``."""
        audiences = self._audiences()
        azp = self._get_jwt_body().get("azp")
        if len(audiences) > 1 and azp is None:
            raise LtiException("id_token has several audiences but no azp claim")
        if azp is not None and azp not in audiences:
            raise LtiException("id_token azp is not one of its audiences")
        try:
            super().validate_registration()
        except Exception as exc:  # noqa: BLE001 - includes lookups raising bare exceptions
            body = self._get_jwt_body()
            raise LtiException(
                f"no registration for issuer {body.get('iss')!r} and client id "
                f"{self.get_client_id()!r} (the LMS must be registered with "
                "`lti-exchange platform add`)"
            ) from exc
        assert self._registration is not None, "Registration not yet set"  # as pylti1p3 does
        client_id = self._registration.get_client_id()
        if azp is not None and azp != client_id:
            raise LtiException("id_token azp is not this tool's client_id")
        extra = [a for a in audiences if a != client_id and a not in self.trusted_audiences]
        if extra:
            raise LtiException("id_token aud contains an untrusted extra audience")
        return self

    # -- keys ---------------------------------------------------------------------------------
    def get_public_key(self) -> tuple[str, str]:
        """Download the platform JWKS again, once, when the ``kid`` is unknown (key rotation at
        the LMS); pylti1p3 would keep using its cached copy. Rate-limited per issuer."""
        alg = self._jwt.get("header", {}).get("alg")
        if alg != "RS256":
            raise LtiException(f"id_token must be signed with RS256, not {alg!r}")
        try:
            return super().get_public_key()
        except LtiException as exc:
            header = self._jwt.get("header", {})
            assert self._registration is not None, "Registration not yet set"  # as pylti1p3 does
            url = self._registration.get_key_set_url()
            if "Unable to find public key" not in str(exc) or header.get("alg") != "RS256":
                raise
            if not url or not self._may_refetch(self._registration.get_issuer()):
                raise
            cache_key = "lti1p3-key-set-url-" + hashlib.md5(url.encode("utf-8")).hexdigest()
            self.store.delete(cache_key)
            self._registration.set_key_set(None)
            return super().get_public_key()

    def _may_refetch(self, issuer: str | None) -> bool:
        minute = int(time.time() // 60)
        digest = hashlib.sha256(str(issuer).encode()).hexdigest()[:32]
        return any(
            self.store.add(f"jwks-refetch-{digest}-{minute}-{slot}", True, 120)
            for slot in range(JWKS_REFETCHES_PER_MINUTE)
        )

    # -- signature and time -------------------------------------------------------------------
    def validate_jwt_signature(self) -> HardenedMessageLaunch:
        """RS256 only (never from the header), the registration's issuer, ``leeway`` seconds of
        clock skew both ways (pylti1p3: none), and a maximum ``iat`` age (pylti1p3: none)."""
        public_key, _alg = self.get_public_key()
        assert self._registration is not None, "Registration not yet set"  # as pylti1p3 does
        try:
            claims = jwt.decode(
                self._get_id_token(),
                public_key,
                algorithms=["RS256"],
                issuer=self._registration.get_issuer(),
                leeway=self.leeway,
                options={"verify_aud": False, "require": ["iss", "aud", "exp", "iat", "nonce"]},
            )
        except jwt.InvalidTokenError as exc:
            raise LtiException(f"Can't decode id_token: {exc}") from exc
        if claims["iat"] < time.time() - self.iat_max_age - self.leeway:
            raise LtiException(
                f"id_token issued too long ago (more than {self.iat_max_age} s): launch again"
            )
        return self

    # -- state and nonce ------------------------------------------------------------------------
    def validate_state(self) -> HardenedMessageLaunch:
        """Accept the state cookie, or — when the browser blocked the cookie (LMS iframe without
        third-party cookies) — the server-side record of this state whose nonce must be the
        id_token's. Without the cookie the launch is valid but not bound to this browser
        (``cookie_bound`` stays False): the caller must bind it before answering tokens
        (``browser_binding``)."""
        state = self._get_request_param("state")
        if not state:
            raise LtiException("Missing state param")
        self.cookie_bound = False
        if self._cookie_service.get_cookie(state) == state:
            self.cookie_bound = True
            return self
        params = self._session_service.get_state_params(state) or {}
        try:
            nonce = jwt.decode(self._get_id_token(), options={"verify_signature": False}).get(
                "nonce"
            )
        except jwt.InvalidTokenError as exc:
            raise LtiException("Invalid id_token") from exc
        if not params.get("nonce") or params.get("nonce") != nonce:
            raise LtiException("State not found: start the launch from your LMS again")
        return self

    def save_launch_data(self) -> HardenedMessageLaunch:
        """Consume the nonce, atomically, after every other check passed (pylti1p3 never does,
        so a replayed id_token would be accepted)."""
        nonce = self._get_jwt_body().get("nonce")
        if not self.store.add(f"lti-used-nonce-{nonce}", True, NONCE_USED_TTL):
            raise LtiException("nonce already used (replay)")
        super().save_launch_data()
        return self

    def login_params(self) -> dict[str, Any]:
        """What the login stored with this state (target_link_uri, nonce)."""
        return self.get_params_from_login() or {}
