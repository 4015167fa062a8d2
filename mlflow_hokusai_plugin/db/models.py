"""SQLAlchemy models of the plugin tables. Every table name starts with ``hokusai_``.

Uniqueness is what keeps concurrent registrations (and the reconciler running beside them) from
duplicating facts: one edge per child version, one attestation per (version, baseline), one
contribution per (contributor, version).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import declarative_base

# The lengths are declared once, in core, where the registration checks values against them.
from mlflow_hokusai_plugin.core.storage_bounds import (
    ADDRESS_LENGTH,
    ATTESTATION_ID_LENGTH,
    ATTESTATION_STATUS_LENGTH,
    BENCHMARK_METRIC_LENGTH,
    MODEL_ID_LENGTH,
    MODEL_TYPE_LENGTH,
    PROJECT_LENGTH,
)

Base = declarative_base()


class LineageEdge(Base):
    """``child`` improves ``parent``: one edge per child model version."""

    __tablename__ = "hokusai_lineage_edges"

    id = Column(Integer, primary_key=True, autoincrement=True)
    child_model_id = Column(String(MODEL_ID_LENGTH), nullable=False, unique=True)
    parent_model_id = Column(String(MODEL_ID_LENGTH), nullable=False, index=True)
    project = Column(String(PROJECT_LENGTH), nullable=False, index=True)
    model_type = Column(String(MODEL_TYPE_LENGTH), nullable=False)
    benchmark_metric = Column(String(BENCHMARK_METRIC_LENGTH), nullable=False)
    baseline_score_bps = Column(BigInteger, nullable=False)
    candidate_score_bps = Column(BigInteger, nullable=False)
    delta_one_bps = Column(BigInteger, nullable=False)
    metric_deltas = Column(Text, nullable=False)  # canonical JSON
    attestation_id = Column(String(ATTESTATION_ID_LENGTH), nullable=True)
    created_at = Column(BigInteger, nullable=False)  # epoch milliseconds, as MLflow keeps time


class Attestation(Base):
    """A signed attestation document, stored whole (it is what clients verify)."""

    __tablename__ = "hokusai_attestations"
    __table_args__ = (UniqueConstraint("model_id", "baseline_model_id", name="uq_hokusai_attestation_edge"),)

    id = Column(String(ATTESTATION_ID_LENGTH), primary_key=True)  # sha256 of the DSSE payload
    model_id = Column(String(MODEL_ID_LENGTH), nullable=False, index=True)
    baseline_model_id = Column(String(MODEL_ID_LENGTH), nullable=False)
    attester = Column(String(ADDRESS_LENGTH), nullable=False)
    status = Column(String(ATTESTATION_STATUS_LENGTH), nullable=False)
    created_at = Column(BigInteger, nullable=False)
    document = Column(Text, nullable=False)  # canonical JSON


class Contribution(Base):
    """A contributor's share of one improvement."""

    __tablename__ = "hokusai_contributions"
    __table_args__ = (
        UniqueConstraint("address", "model_id", name="uq_hokusai_contribution"),
        Index("ix_hokusai_contributions_address_created", "address", "created_at"),
    )

    id = Column(Integer, primary_key=True, autoincrement=True)
    address = Column(String(ADDRESS_LENGTH), nullable=False)  # EIP-55 checksummed
    model_id = Column(String(MODEL_ID_LENGTH), nullable=False, index=True)
    project = Column(String(PROJECT_LENGTH), nullable=False)
    weight_bps = Column(Integer, nullable=False)
    samples = Column(BigInteger, nullable=True)
    attributed_bps = Column(BigInteger, nullable=False)
    attestation_id = Column(
        String(ATTESTATION_ID_LENGTH), ForeignKey("hokusai_attestations.id"), nullable=True
    )
    created_at = Column(BigInteger, nullable=False)


class ContributorTotal(Base):
    """A contributor's running totals in one project, kept in the transaction that adds each
    contribution, so a contributor's impact is a primary-key lookup however many contributions
    they have (aggregating the heaviest benchmark contributor's 10k rows took about 17 ms)."""

    __tablename__ = "hokusai_contributor_totals"

    address = Column(String(ADDRESS_LENGTH), primary_key=True)
    project = Column(String(PROJECT_LENGTH), primary_key=True)
    models_improved = Column(BigInteger, nullable=False)
    attributed_bps = Column(BigInteger, nullable=False)
    first_contribution = Column(BigInteger, nullable=False)  # epoch milliseconds
    last_contribution = Column(BigInteger, nullable=False)


class AuditEntry(Base):
    """One link of the audit hash chain. ``seq`` is gap-free; ``hash`` covers the row and ``prev_hash``."""

    __tablename__ = "hokusai_audit_log"

    seq = Column(BigInteger, primary_key=True, autoincrement=False)
    created_at = Column(BigInteger, nullable=False)
    actor = Column(String(256), nullable=False)
    action = Column(String(64), nullable=False)
    target = Column(String(600), nullable=False, index=True)
    before = Column(Text, nullable=True)  # canonical JSON
    after = Column(Text, nullable=True)  # canonical JSON
    request_id = Column(String(64), nullable=True)
    prev_hash = Column(String(64), nullable=False)
    hash = Column(String(64), nullable=False)


class AuditHead(Base):
    """The single row naming the chain's last link.

    Appenders lock it by updating it first, which serialises appends across workers and replicas
    on PostgreSQL (row lock) and SQLite (write lock) alike; it also lets ``audit verify`` notice
    rows deleted from the end of the chain.
    """

    __tablename__ = "hokusai_audit_head"

    id = Column(Integer, primary_key=True, autoincrement=False)
    seq = Column(BigInteger, nullable=False)
    hash = Column(String(64), nullable=False)


class ApiKey(Base):
    """An API key, stored only as a hash."""

    __tablename__ = "hokusai_api_keys"

    id = Column(Integer, primary_key=True, autoincrement=True)
    key_hash = Column(String(64), nullable=False, unique=True)
    prefix = Column(String(24), nullable=False)  # shown in listings, never enough to use
    name = Column(String(256), nullable=False)
    role = Column(String(16), nullable=False)  # read, write, admin
    project = Column(String(64), nullable=True)  # None: every project
    created_at = Column(BigInteger, nullable=False)
    revoked_at = Column(BigInteger, nullable=True)


class IdempotencyRecord(Base):
    """A request made with an ``Idempotency-Key``: claimed first, then its stored answer.

    One row per (principal, key): the unique constraint is what lets only one of two concurrent
    requests with the same key do the work.
    """

    __tablename__ = "hokusai_idempotency_keys"
    __table_args__ = (UniqueConstraint("principal", "idempotency_key", name="uq_hokusai_idempotency_key"),)

    id = Column(Integer, primary_key=True, autoincrement=True)
    principal = Column(String(256), nullable=False)
    idempotency_key = Column(String(128), nullable=False)
    route = Column(String(128), nullable=False)  # e.g. "POST /models/register"
    request_hash = Column(String(64), nullable=False)  # sha256 of the canonical JSON body
    state = Column(String(16), nullable=False)  # in_progress, completed
    status_code = Column(Integer, nullable=True)
    response = Column(Text, nullable=True)  # the JSON body answered
    created_at = Column(BigInteger, nullable=False, index=True)
    completed_at = Column(BigInteger, nullable=True)


class Backup(Base):
    """A backup that ``hokusai backup create`` finished: where it is and what it held.

    Written only after the backup directory is complete, so its newest ``created_at`` is the time
    of the last good backup (the ``hokusai_backup_last_success_timestamp_seconds`` gauge).
    """

    __tablename__ = "hokusai_backups"

    id = Column(Integer, primary_key=True, autoincrement=True)
    created_at = Column(BigInteger, nullable=False, index=True)  # epoch milliseconds
    location = Column(String(1000), nullable=False)
    manifest_sha256 = Column(String(64), nullable=False)
    counts = Column(Text, nullable=False)  # canonical JSON: the manifest's row counts
