"""resource links: each LMS link's line item, offered scopes and nbgrader assignment

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lti_exchange.models.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resource_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column(
            "lti_resource_link_id",
            lti_exchange.models.types.Identifier(length=255),
            nullable=False,
        ),
        sa.Column("title", sa.String(length=255), nullable=True),
        sa.Column("lineitem_url", sa.String(length=1000), nullable=True),
        sa.Column("ags_scopes", sa.JSON(), nullable=True),
        sa.Column(
            "assignment_name", lti_exchange.models.types.Identifier(length=100), nullable=True
        ),
        sa.Column("bound_by", sa.String(length=16), nullable=True),
        sa.Column("created_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["course.id"],
            name=op.f("fk_resource_link_course_id_course"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_link")),
        sa.UniqueConstraint(
            "course_id",
            "lti_resource_link_id",
            name=op.f("uq_resource_link_course_id_lti_resource_link_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("resource_link")
