"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 21:52:27.577118
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lti_exchange.models.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "organisation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisation")),
        sa.UniqueConstraint("name", name=op.f("uq_organisation_name")),
    )
    op.create_table(
        "course",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("code", lti_exchange.models.types.Identifier(length=100), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=True),
        sa.Column("created_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
            name=op.f("fk_course_org_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_course")),
        sa.UniqueConstraint("org_id", "code", name=op.f("uq_course_org_id_code")),
    )
    op.create_table(
        "user_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("username", lti_exchange.models.types.Identifier(length=100), nullable=False),
        sa.Column("lms_user_id", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("created_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisation.id"],
            name=op.f("fk_user_account_org_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_account")),
        sa.UniqueConstraint("org_id", "username", name=op.f("uq_user_account_org_id_username")),
    )
    op.create_table(
        "assignment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("name", lti_exchange.models.types.Identifier(length=100), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.Column("current_release_id", sa.Integer(), nullable=True),
        sa.Column("created_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["course.id"],
            name=op.f("fk_assignment_course_id_course"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assignment")),
        sa.UniqueConstraint("course_id", "name", name=op.f("uq_assignment_course_id_name")),
    )
    op.create_table(
        "enrolment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("tokens_not_before", lti_exchange.models.types.UtcDateTime(), nullable=True),
        sa.Column("updated_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["course.id"],
            name=op.f("fk_enrolment_course_id_course"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_enrolment_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolment")),
        sa.UniqueConstraint("user_id", "course_id", name=op.f("uq_enrolment_user_id_course_id")),
    )
    op.create_index(op.f("ix_enrolment_course_id"), "enrolment", ["course_id"], unique=False)
    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("subject_id", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("created_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignment.id"],
            name=op.f("fk_event_assignment_id_assignment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["course_id"], ["course.id"], name=op.f("fk_event_course_id_course"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_event_user_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event")),
    )
    op.create_index(
        "ix_event_course_assignment_user",
        "event",
        ["course_id", "assignment_id", "user_id"],
        unique=False,
    )
    op.create_table(
        "release",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("blob_key", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("notebooks", sa.JSON(), nullable=False),
        sa.Column("released_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignment.id"],
            name=op.f("fk_release_assignment_id_assignment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["released_by_id"],
            ["user_account.id"],
            name=op.f("fk_release_released_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release")),
        sa.UniqueConstraint(
            "assignment_id", "version", name=op.f("uq_release_assignment_id_version")
        ),
    )
    op.create_table(
        "submission",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("timestamp", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.Column("blob_key", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("notebooks", sa.JSON(), nullable=False),
        sa.Column("removed_at", lti_exchange.models.types.UtcDateTime(), nullable=True),
        sa.Column("collected_at", lti_exchange.models.types.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignment.id"],
            name=op.f("fk_submission_assignment_id_assignment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_submission_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submission")),
    )
    op.create_index(
        "ix_submission_assignment_user", "submission", ["assignment_id", "user_id"], unique=False
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("notebook_id", lti_exchange.models.types.Identifier(length=100), nullable=False),
        sa.Column("blob_key", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("released_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", lti_exchange.models.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["released_by_id"],
            ["user_account.id"],
            name=op.f("fk_feedback_released_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submission.id"],
            name=op.f("fk_feedback_submission_id_submission"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint(
            "submission_id", "notebook_id", name=op.f("uq_feedback_submission_id_notebook_id")
        ),
    )


def downgrade() -> None:

    op.drop_table("feedback")
    op.drop_index("ix_submission_assignment_user", table_name="submission")
    op.drop_table("submission")
    op.drop_table("release")
    op.drop_index("ix_event_course_assignment_user", table_name="event")
    op.drop_table("event")
    op.drop_index(op.f("ix_enrolment_course_id"), table_name="enrolment")
    op.drop_table("enrolment")
    op.drop_table("assignment")
    op.drop_table("user_account")
    op.drop_table("course")
    op.drop_table("organisation")
