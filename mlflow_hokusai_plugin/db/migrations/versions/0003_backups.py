"""Finished backups (``hokusai backup create``): when, where, the manifest's hash, the row counts.

Revision ID: 0003_backups
Revises: 0002_idempotency
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_backups"
down_revision = "0002_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hokusai_backups",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("location", sa.String(1000), nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
    )
    op.create_index("ix_hokusai_backups_created_at", "hokusai_backups", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_hokusai_backups_created_at", table_name="hokusai_backups")
    op.drop_table("hokusai_backups")
