"""The unified registry across projects (``GET /projects``): two SQL queries, whatever the size.

One query reads MLflow's own tables (registered models tagged ``hokusai.project`` and their
versions), one reads ``hokusai_lineage_edges`` (attested improvements and their DeltaOne); no
per-model registry call.
"""

from __future__ import annotations

import functools

from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Engine

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.db.models import LineageEdge

# MLflow marks a deleted version with this stage until it is purged.
_DELETED_STAGE = "Deleted_Internal"


@functools.lru_cache(maxsize=16)
def _has_workspaces(engine: Engine) -> bool:
    # MLflow 3.x releases with workspaces key registry rows by (workspace, name); older ones by name.
    return "workspace" in {column["name"] for column in inspect(engine).get_columns("registered_models")}


def _models_query(workspaces: bool):
    same = "{a}.workspace = {b}.workspace AND " if workspaces else ""
    return text(
        f"""
        SELECT t.value AS project, rm.name AS name,
               COUNT(mv.version) AS versions, MAX(mv.version) AS latest_version
        FROM registered_model_tags t
        JOIN registered_models rm ON {same.format(a="rm", b="t")}rm.name = t.name
        LEFT JOIN model_versions mv
          ON {same.format(a="mv", b="rm")}mv.name = rm.name AND mv.current_stage <> :deleted
        WHERE t.key = :project_tag
        GROUP BY t.value, {"rm.workspace, " if workspaces else ""}rm.name
        ORDER BY t.value, rm.name
        """
    )


def unified_registry(engine: Engine) -> list[dict]:
    """Every project with tagged registered models or attested improvements, sorted by name.

    Each: ``project``, ``registered_models`` (``name``, ``latest_version``, ``versions``),
    ``improvements``, ``delta_one_bps`` and ``last_improvement_timestamp`` (epoch ms or None).
    """
    with engine.connect() as connection:
        models = (
            connection.execute(
                _models_query(_has_workspaces(engine)),
                {"deleted": _DELETED_STAGE, "project_tag": T.PROJECT},
            )
            .mappings()
            .all()
        )
        improvements = connection.execute(
            select(
                LineageEdge.project,
                func.count(LineageEdge.id),
                func.coalesce(func.sum(LineageEdge.delta_one_bps), 0),
                func.max(LineageEdge.created_at),
            ).group_by(LineageEdge.project)
        ).all()
    projects: dict[str, dict] = {}

    def project(name: str) -> dict:
        return projects.setdefault(
            name,
            {
                "project": name,
                "registered_models": [],
                "improvements": 0,
                "delta_one_bps": 0,
                "last_improvement_timestamp": None,
            },
        )

    for row in models:
        project(row["project"])["registered_models"].append(
            {
                "name": row["name"],
                "latest_version": None if row["latest_version"] is None else int(row["latest_version"]),
                "versions": int(row["versions"]),
            }
        )
    for name, count, delta_one, last in improvements:
        entry = project(name)
        entry.update(improvements=int(count), delta_one_bps=int(delta_one), last_improvement_timestamp=last)
    return [projects[name] for name in sorted(projects)]
