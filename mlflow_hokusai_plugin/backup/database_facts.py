"""Row counts and schema revisions of a database: what a backup promises and verify re-reads.

Read on one connection, inside the transaction the dump is taken in, so the counts describe
exactly the rows the dump holds (see ``postgres.dump``).
"""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from mlflow_hokusai_plugin.db.schema import VERSION_TABLE

# name in the manifest -> table. MLflow's registry and tracking, then the plugin's records.
COUNTED_TABLES = {
    "experiments": "experiments",
    "runs": "runs",
    "logged_models": "logged_models",
    "registered_models": "registered_models",
    "model_versions": "model_versions",
    "model_version_tags": "model_version_tags",
    "lineage_edges": "hokusai_lineage_edges",
    "attestations": "hokusai_attestations",
    "contributions": "hokusai_contributions",
    "audit_entries": "hokusai_audit_log",
    "api_keys": "hokusai_api_keys",
}
MLFLOW_VERSION_TABLE = "alembic_version"


def read_counts(connection: Connection) -> dict[str, int | None]:
    """Rows per counted table (``None`` for a table this database does not have), and the audit head."""
    tables = set(inspect(connection).get_table_names())
    counts: dict[str, int | None] = {}
    for name, table in COUNTED_TABLES.items():
        # Table names come from the constant above, never from input.
        counts[name] = (
            connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
            if table in tables
            else None
        )
    counts["audit_head_seq"] = (
        connection.execute(text("SELECT seq FROM hokusai_audit_head WHERE id = 1")).scalar()
        if "hokusai_audit_head" in tables
        else None
    )
    return counts


def read_revisions(connection: Connection) -> dict[str, str | None]:
    """MLflow's Alembic revision (``alembic_version``) and the plugin's (``alembic_version_hokusai``)."""
    tables = set(inspect(connection).get_table_names())
    revisions: dict[str, str | None] = {}
    for name, table in (("mlflow", MLFLOW_VERSION_TABLE), ("hokusai", VERSION_TABLE)):
        revisions[name] = (
            connection.execute(text(f"SELECT version_num FROM {table}")).scalar() if table in tables else None
        )
    return revisions
