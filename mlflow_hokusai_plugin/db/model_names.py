"""Plugin records follow their registered model: renamed with it, detached when it is deleted.

The plugin's records name versions as MLflow does, ``<registered model>/<version>``. MLflow keys
registered models by name and starts a re-created name at version 1 again, so records left under a
name would pass to any later model of that name (its lineage, its attestations, its "attested,
final" refusals), and a renamed model's attested versions would lose theirs. These statements run
in the transaction of MLflow's own rename or delete (``store/renames.py``), so the records and
MLflow's registry never disagree.

A deleted model's records keep their history under ``<name>:deleted:<epoch ms>/<version>``:
MLflow forbids ``:`` in model names, so no model can ever take that name.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

# Every plugin column holding a model id, and MLflow's tag that names a baseline by model id.
MODEL_ID_COLUMNS = (
    ("hokusai_lineage_edges", "child_model_id"),
    ("hokusai_lineage_edges", "parent_model_id"),
    ("hokusai_attestations", "model_id"),
    ("hokusai_attestations", "baseline_model_id"),
    ("hokusai_contributions", "model_id"),
)
BASELINE_TAG = "hokusai.baseline"
DELETED_MARK = ":deleted:"


def _prefix_pattern(name: str) -> str:
    """``name/%`` for LIKE, with LIKE's own wildcards in the name escaped."""
    escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "/%"


def _rename(connection: Any, table: str, column: str, old: str, new: str, where: str = "") -> None:
    connection.execute(
        text(
            f"UPDATE {table} SET {column} = :new || substr({column}, :cut) "  # noqa: S608 - names are ours
            f"WHERE {column} LIKE :pattern ESCAPE '\\' {where}"
        ),
        {"new": new, "cut": len(old) + 1, "pattern": _prefix_pattern(old)},
    )


def rename_model_records(connection: Any, old: str, new: str) -> None:
    """Every record of ``old/<n>`` becomes ``new/<n>``, and so do baselines named in version tags.

    >>> import sqlalchemy
    >>> engine = sqlalchemy.create_engine("sqlite://")
    >>> with engine.begin() as c:
    ...     _ = c.execute(text("CREATE TABLE t (m TEXT)"))
    ...     _ = c.execute(text("INSERT INTO t VALUES ('a_b/1'), ('aXb/1'), ('a_b2/1')"))
    ...     _rename(c, "t", "m", "a_b", "c")
    ...     sorted(r[0] for r in c.execute(text("SELECT m FROM t")))
    ['aXb/1', 'a_b2/1', 'c/1']
    """
    for table, column in MODEL_ID_COLUMNS:
        _rename(connection, table, column, old, new)
    _rename(connection, "model_version_tags", "value", old, new, f"AND key = '{BASELINE_TAG}'")


def detach_model_records(connection: Any, name: str, deleted_at_ms: int) -> None:
    """The records of a deleted model keep their history under a name no model can take."""
    tombstone = f"{name}{DELETED_MARK}{deleted_at_ms}"
    for table, column in MODEL_ID_COLUMNS:
        _rename(connection, table, column, name, tombstone)
