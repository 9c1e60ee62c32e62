"""pylti1p3 tool configuration backed by our database and the tool key ring."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from pylti1p3.deployment import Deployment
from pylti1p3.registration import Registration
from pylti1p3.tool_config.abstract import ToolConfAbstract
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lti_exchange.keyring import KeyRing, SigningKey
from lti_exchange.models import LtiDeployment, LtiRegistration


def private_pem(key: SigningKey) -> str:
    return key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: SigningKey) -> str:
    return key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def tool_jwks(keys: KeyRing) -> dict[str, Any]:
    """Every kept tool key, with the RFC 7638 thumbprint as ``kid`` (what pylti1p3 signs with)."""
    return {"keys": [Registration.get_jwk(public_pem(key)) for key in keys.all()]}


class DatabaseToolConf(ToolConfAbstract):
    """Registrations and deployments from the database; one issuer may have many client ids.

    Unknown issuers, client ids and deployments give ``None``, which pylti1p3 turns into
    ``LtiException``/``OIDCException`` (a 4xx), never a bare exception.
    """

    def __init__(self, session_factory: sessionmaker[Session], tool_keys: KeyRing) -> None:
        super().__init__()
        self._sessions = session_factory
        self._tool_keys = tool_keys
        self.row: LtiRegistration | None = None

    def check_iss_has_one_client(self, iss: str) -> bool:
        return False

    def check_iss_has_many_clients(self, iss: str) -> bool:
        return True

    def _lookup(self, iss: str, client_id: str | None) -> LtiRegistration | None:
        with self._sessions() as session:
            query = select(LtiRegistration).where(LtiRegistration.issuer == iss)
            if client_id:
                query = query.where(LtiRegistration.client_id == client_id)
            rows = session.execute(query).scalars().all()
            if len(rows) != 1:  # none, or several and no client_id to choose
                return None
            session.expunge(rows[0])
            return rows[0]

    def find_registration_by_params(  # type: ignore[override]  # pylti1p3 handles None
        self, iss: str, client_id: str | None, *args: Any, **kwargs: Any
    ) -> Registration | None:
        row = self._lookup(iss, client_id)
        if row is None:
            return None
        self.row = row
        key = self._tool_keys.ensure_key()
        registration = Registration()
        registration.set_issuer(row.issuer).set_client_id(row.client_id).set_auth_login_url(
            row.auth_login_url
        ).set_auth_token_url(row.auth_token_url).set_key_set_url(row.key_set_url)
        if row.auth_audience:
            registration.set_auth_audience(row.auth_audience)
        registration.set_tool_private_key(private_pem(key))
        registration.set_tool_public_key(public_pem(key))
        return registration

    def find_registration_by_issuer(self, iss: str, *args: Any, **kwargs: Any) -> Registration:
        raise NotImplementedError

    def find_deployment(self, iss: str, deployment_id: str) -> Deployment:
        raise NotImplementedError

    def find_deployment_by_params(
        self, iss: str, deployment_id: str, client_id: str | None, *args: Any, **kwargs: Any
    ) -> Deployment | None:
        with self._sessions() as session:
            found = session.execute(
                select(LtiDeployment.id)
                .join(LtiRegistration, LtiRegistration.id == LtiDeployment.registration_id)
                .where(
                    LtiRegistration.issuer == iss,
                    LtiRegistration.client_id == client_id,
                    LtiDeployment.deployment_id == deployment_id,
                )
            ).first()
        if found is None:
            return None
        return Deployment().set_deployment_id(deployment_id)

    def get_jwks(self, iss: str | None = None, client_id: str | None = None, **kwargs: Any):
        return tool_jwks(self._tool_keys)
