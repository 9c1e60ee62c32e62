"""due dates: each assignment's due date (from the LMS or an instructor) and per-student
extensions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 08:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lti_exchange.models.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "due_date",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column(
            "assignment_name", lti_exchange.models.types.Identifier(length=100), nullable=False
        ),
        sa.Column("due_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("set_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["course.id"],
            name=op.f("fk_due_date_course_id_course"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["set_by_id"],
            ["user_account.id"],
            name=op.f("fk_due_date_set_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_due_date")),
        sa.UniqueConstraint(
            "course_id", "assignment_name", name=op.f("uq_due_date_course_id_assignment_name")
        ),
    )
    op.create_table(
        "due_date_extension",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column(
            "assignment_name", lti_exchange.models.types.Identifier(length=100), nullable=False
        ),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("due_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.Column("set_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["course.id"],
            name=op.f("fk_due_date_extension_course_id_course"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_due_date_extension_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["set_by_id"],
            ["user_account.id"],
            name=op.f("fk_due_date_extension_set_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_due_date_extension")),
        sa.UniqueConstraint(
            "course_id",
            "assignment_name",
            "user_id",
            name=op.f("uq_due_date_extension_course_id_assignment_name_user_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("due_date_extension")
    op.drop_table("due_date")
