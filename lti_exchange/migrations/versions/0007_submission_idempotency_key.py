"""submission idempotency key: a retried upload answers with the submission its first attempt
stored instead of storing a second one

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 21:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("submission", sa.Column("idempotency_key", sa.String(64), nullable=True))
    op.create_index(
        "uq_submission_user_idempotency_key",
        "submission",
        ["idempotency_key", "user_id"],  # not user_id first: MariaDB would drop its FK index
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_submission_user_idempotency_key", table_name="submission")
    with op.batch_alter_table("submission") as batch:
        batch.drop_column("idempotency_key")
