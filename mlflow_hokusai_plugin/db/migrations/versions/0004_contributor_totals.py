"""Per (contributor, project) totals, so contributor impact never aggregates contributions.

Revision ID: 0004_contributor_totals
Revises: 0003_backups
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_contributor_totals"
down_revision = "0003_backups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hokusai_contributor_totals",
        sa.Column("address", sa.String(42), primary_key=True),
        sa.Column("project", sa.String(64), primary_key=True),
        sa.Column("models_improved", sa.BigInteger(), nullable=False),
        sa.Column("attributed_bps", sa.BigInteger(), nullable=False),
        sa.Column("first_contribution", sa.BigInteger(), nullable=False),
        sa.Column("last_contribution", sa.BigInteger(), nullable=False),
    )
    # One contribution per (address, model_id), so a row count is the number of models improved.
    op.execute(
        "INSERT INTO hokusai_contributor_totals (address, project, models_improved, attributed_bps, "
        "first_contribution, last_contribution) "
        "SELECT address, project, COUNT(*), SUM(attributed_bps), MIN(created_at), MAX(created_at) "
        "FROM hokusai_contributions GROUP BY address, project"
    )


def downgrade() -> None:
    op.drop_table("hokusai_contributor_totals")
