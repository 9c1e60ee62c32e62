"""lti registrations, kv store, refresh tokens

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 22:26:39.465052
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lti_exchange.models.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kv_store",
        sa.Column("key", lti_exchange.models.types.Identifier(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("expires_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_kv_store")),
    )
    op.create_index(op.f("ix_kv_store_expires_at"), "kv_store", ["expires_at"], unique=False)
    op.create_table(
        "lti_registration",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("issuer", lti_exchange.models.types.Identifier(length=255), nullable=False),
        sa.Column("client_id", lti_exchange.models.types.Identifier(length=255), nullable=False),
        sa.Column("auth_login_url", sa.String(length=1000), nullable=False),
        sa.Column("auth_token_url", sa.String(length=1000), nullable=False),
        sa.Column("auth_audience", sa.String(length=1000), nullable=True),
        sa.Column("key_set_url", sa.String(length=1000), nullable=False),
        sa.Column("notebook_url_template", sa.String(length=1000), nullable=True),
        sa.Column("username_claim", sa.String(length=255), nullable=True),
        sa.Column("created_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
            name=op.f("fk_lti_registration_org_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_registration")),
        sa.UniqueConstraint(
            "issuer", "client_id", name=op.f("uq_lti_registration_issuer_client_id")
        ),
        sa.UniqueConstraint("org_id", name=op.f("uq_lti_registration_org_id")),
    )
    op.create_table(
        "lti_deployment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("registration_id", sa.Integer(), nullable=False),
        sa.Column(
            "deployment_id", lti_exchange.models.types.Identifier(length=255), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["registration_id"],
            ["lti_registration.id"],
            name=op.f("fk_lti_deployment_registration_id_lti_registration"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lti_deployment")),
        sa.UniqueConstraint(
            "registration_id",
            "deployment_id",
            name=op.f("uq_lti_deployment_registration_id_deployment_id"),
        ),
    )
    op.create_table(
        "refresh_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("enrolment_id", sa.Integer(), nullable=False),
        sa.Column("created_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.Column("expires_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.Column("used_at", lti_exchange.models.types.UtcDateTime(), nullable=True),
        sa.Column("revoked_at", lti_exchange.models.types.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["enrolment_id"],
            ["enrolment.id"],
            name=op.f("fk_refresh_token_enrolment_id_enrolment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_token_token_hash")),
    )
    op.create_index(
        op.f("ix_refresh_token_enrolment_id"), "refresh_token", ["enrolment_id"], unique=False
    )
    # Batch mode: SQLite cannot add constraints to an existing table.
    with op.batch_alter_table("course") as batch:
        batch.add_column(
            sa.Column(
                "lti_context_id", lti_exchange.models.types.Identifier(length=255), nullable=True
            )
        )
        batch.add_column(sa.Column("lti_deployment_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("ags_lineitems_url", sa.String(length=1000), nullable=True))
        batch.add_column(sa.Column("ags_scopes", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("nrps_memberships_url", sa.String(length=1000), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_course_org_id_lti_context_id"), ["org_id", "lti_context_id"]
        )
    with op.batch_alter_table("user_account") as batch:
        batch.add_column(
            sa.Column("lti_sub", lti_exchange.models.types.Identifier(length=255), nullable=True)
        )
        batch.add_column(
            sa.Column("test_user", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_unique_constraint(
            op.f("uq_user_account_org_id_lti_sub"), ["org_id", "lti_sub"]
        )


def downgrade() -> None:
    with op.batch_alter_table("user_account") as batch:
        batch.drop_constraint(op.f("uq_user_account_org_id_lti_sub"), type_="unique")
        batch.drop_column("test_user")
        batch.drop_column("lti_sub")
    with op.batch_alter_table("course") as batch:
        batch.drop_constraint(op.f("uq_course_org_id_lti_context_id"), type_="unique")
        for column in (
            "nrps_memberships_url",
            "ags_scopes",
            "ags_lineitems_url",
            "lti_deployment_id",
            "lti_context_id",
        ):
            batch.drop_column(column)
    op.drop_index(op.f("ix_refresh_token_enrolment_id"), table_name="refresh_token")
    op.drop_table("refresh_token")
    op.drop_table("lti_deployment")
    op.drop_table("lti_registration")
    op.drop_index(op.f("ix_kv_store_expires_at"), table_name="kv_store")
    op.drop_table("kv_store")
