"""Idempotency keys of POST /models/register: the claimed request and its stored answer.

Revision ID: 0002_idempotency
Revises: 0001_initial
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_idempotency"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hokusai_idempotency_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("principal", sa.String(256), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("completed_at", sa.BigInteger(), nullable=True),
        sa.UniqueConstraint("principal", "idempotency_key", name="uq_hokusai_idempotency_key"),
    )
    op.create_index("ix_hokusai_idempotency_keys_created_at", "hokusai_idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_hokusai_idempotency_keys_created_at", table_name="hokusai_idempotency_keys")
    op.drop_table("hokusai_idempotency_keys")
