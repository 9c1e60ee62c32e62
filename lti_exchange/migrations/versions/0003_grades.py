"""grades

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 23:14:06.803617
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lti_exchange.models.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grade",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column(
            "assignment_name", lti_exchange.models.types.Identifier(length=100), nullable=False
        ),
        sa.Column("student_id", lti_exchange.models.types.Identifier(length=100), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("max_score", sa.Float(), nullable=False),
        sa.Column("submitted_at", lti_exchange.models.types.UtcDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("pushed_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.Column("sent_at", lti_exchange.models.types.UtcDateTime(), nullable=True),
        sa.Column("last_score_timestamp", lti_exchange.models.types.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["course_id"], ["course.id"], name=op.f("fk_grade_course_id_course"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["pushed_by_id"],
            ["user_account.id"],
            name=op.f("fk_grade_pushed_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grade")),
        sa.UniqueConstraint(
            "course_id",
            "assignment_name",
            "student_id",
            name=op.f("uq_grade_course_id_assignment_name_student_id"),
        ),
    )
    op.create_table(
        "line_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column(
            "assignment_name", lti_exchange.models.types.Identifier(length=100), nullable=False
        ),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("score_maximum", sa.Float(), nullable=False),
        sa.Column("created_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["course.id"],
            name=op.f("fk_line_item_course_id_course"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_line_item")),
        sa.UniqueConstraint(
            "course_id", "assignment_name", name=op.f("uq_line_item_course_id_assignment_name")
        ),
    )
    op.create_table(
        "grade_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grade_id", sa.Integer(), nullable=False),
        sa.Column("created_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.Column("available_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("locked_by", sa.String(length=64), nullable=True),
        sa.Column("locked_until", lti_exchange.models.types.UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["grade_id"],
            ["grade.id"],
            name=op.f("fk_grade_outbox_grade_id_grade"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grade_outbox")),
        sa.UniqueConstraint("grade_id", name=op.f("uq_grade_outbox_grade_id")),
    )
    op.create_index(
        op.f("ix_grade_outbox_available_at"), "grade_outbox", ["available_at"], unique=False
    )
    with op.batch_alter_table("course") as batch:
        batch.add_column(
            sa.Column("roster_synced_at", lti_exchange.models.types.UtcDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("course") as batch:
        batch.drop_column("roster_synced_at")
    op.drop_index(op.f("ix_grade_outbox_available_at"), table_name="grade_outbox")
    op.drop_table("grade_outbox")
    op.drop_table("line_item")
    op.drop_table("grade")
