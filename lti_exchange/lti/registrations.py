"""Create, list and remove LMS registrations (each is one organisation)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from lti_exchange.lti.notebook_url import check_template
from lti_exchange.models import LtiDeployment, LtiRegistration, Organisation


@dataclass
class RegistrationInput:
    issuer: str
    client_id: str
    deployment_ids: list[str] = field(default_factory=list)
    auth_login_url: str = ""
    auth_token_url: str = ""
    key_set_url: str = ""
    auth_audience: str | None = None
    name: str | None = None
    notebook_url_template: str | None = None
    username_claim: str | None = None


def upsert_registration(session: Session, data: RegistrationInput) -> LtiRegistration:
    """Add the registration (and its organisation), or update it when it exists; a bad
    ``notebook_url_template`` is a ``ValueError`` (``notebook_url.check_template``)."""
    template = data.notebook_url_template
    template = check_template(template) if template else None  # before anything is written
    row = session.execute(
        select(LtiRegistration).where(
            LtiRegistration.issuer == data.issuer, LtiRegistration.client_id == data.client_id
        )
    ).scalar_one_or_none()
    if row is None:
        org = Organisation(name=data.name or f"{data.issuer} ({data.client_id})")
        session.add(org)
        session.flush()
        row = LtiRegistration(org_id=org.id, issuer=data.issuer, client_id=data.client_id)
        session.add(row)
    elif data.name:
        session.get_one(Organisation, row.org_id).name = data.name
    row.auth_login_url = data.auth_login_url
    row.auth_token_url = data.auth_token_url
    row.key_set_url = data.key_set_url
    row.auth_audience = data.auth_audience
    row.notebook_url_template = template
    row.username_claim = data.username_claim
    session.flush()
    existing = {d.deployment_id for d in row.deployments}
    for deployment_id in data.deployment_ids:
        if deployment_id not in existing:
            row.deployments.append(LtiDeployment(deployment_id=deployment_id))
    session.flush()
    row.organisation_name = session.get_one(Organisation, row.org_id).name  # type: ignore[attr-defined]
    return row


def list_registrations(session: Session) -> list[LtiRegistration]:
    rows = session.execute(
        select(LtiRegistration, Organisation.name)
        .join(Organisation, Organisation.id == LtiRegistration.org_id)
        .order_by(LtiRegistration.org_id)
    ).all()
    for row, name in rows:
        row.organisation_name = name  # type: ignore[attr-defined]
    return [row for row, _name in rows]


def remove_registration(session: Session, issuer: str, client_id: str) -> bool:
    row = session.execute(
        select(LtiRegistration).where(
            LtiRegistration.issuer == issuer, LtiRegistration.client_id == client_id
        )
    ).scalar_one_or_none()
    if row is None:
        return False
    session.delete(row)
    return True
