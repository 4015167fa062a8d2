"""The plugin tables: lineage edges, attestations, contributions, audit chain, API keys.

Revision ID: 0001_initial
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hokusai_lineage_edges",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("child_model_id", sa.String(512), nullable=False),
        sa.Column("parent_model_id", sa.String(512), nullable=False),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("model_type", sa.String(32), nullable=False),
        sa.Column("benchmark_metric", sa.String(250), nullable=False),
        sa.Column("baseline_score_bps", sa.BigInteger(), nullable=False),
        sa.Column("candidate_score_bps", sa.BigInteger(), nullable=False),
        sa.Column("delta_one_bps", sa.BigInteger(), nullable=False),
        sa.Column("metric_deltas", sa.Text(), nullable=False),
        sa.Column("attestation_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("child_model_id", name="uq_hokusai_lineage_edges_child_model_id"),
    )
    op.create_index("ix_hokusai_lineage_edges_parent_model_id", "hokusai_lineage_edges", ["parent_model_id"])
    op.create_index("ix_hokusai_lineage_edges_project", "hokusai_lineage_edges", ["project"])

    op.create_table(
        "hokusai_attestations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("model_id", sa.String(512), nullable=False),
        sa.Column("baseline_model_id", sa.String(512), nullable=False),
        sa.Column("attester", sa.String(42), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.UniqueConstraint("model_id", "baseline_model_id", name="uq_hokusai_attestation_edge"),
    )
    op.create_index("ix_hokusai_attestations_model_id", "hokusai_attestations", ["model_id"])

    op.create_table(
        "hokusai_contributions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("model_id", sa.String(512), nullable=False),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("weight_bps", sa.Integer(), nullable=False),
        sa.Column("samples", sa.BigInteger(), nullable=True),
        sa.Column("attributed_bps", sa.BigInteger(), nullable=False),
        sa.Column("attestation_id", sa.String(64), sa.ForeignKey("hokusai_attestations.id"), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("address", "model_id", name="uq_hokusai_contribution"),
    )
    op.create_index("ix_hokusai_contributions_model_id", "hokusai_contributions", ["model_id"])
    op.create_index(
        "ix_hokusai_contributions_address_created", "hokusai_contributions", ["address", "created_at"]
    )

    op.create_table(
        "hokusai_audit_log",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(600), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_hokusai_audit_log_target", "hokusai_audit_log", ["target"])
    op.create_table(
        "hokusai_audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    # The genesis link: seq 0 and 64 zeros, so the first entry has a predecessor to name.
    op.execute("INSERT INTO hokusai_audit_head (id, seq, hash) VALUES (1, 0, '" + "0" * 64 + "')")

    op.create_table(
        "hokusai_api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(24), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("project", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.UniqueConstraint("key_hash", name="uq_hokusai_api_keys_key_hash"),
    )


def downgrade() -> None:
    for table in (
        "hokusai_api_keys",
        "hokusai_audit_head",
        "hokusai_audit_log",
        "hokusai_contributions",
        "hokusai_attestations",
        "hokusai_lineage_edges",
    ):
        op.drop_table(table)
