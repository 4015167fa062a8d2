"""Reads and writes of the plugin tables: lineage edges, attestations, contributions.

Writes of one improvement happen in one transaction and are idempotent: a second writer of the
same facts (a concurrent request, the reconciler) hits a unique constraint, rolls back, and gets
the facts that won.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, create_engine, event, func, or_, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.canonical import canonical_json
from mlflow_hokusai_plugin.db.models import Attestation, Contribution, ContributorTotal, LineageEdge
from mlflow_hokusai_plugin.db.urls import database_url


def make_engine(store_uri: str) -> Engine:
    """An engine for the plugin tables; SQLite gets a busy timeout so writers wait, not fail."""
    url = database_url(store_uri)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            dbapi_connection.execute("PRAGMA busy_timeout = 30000")

        return engine
    return create_engine(url, pool_pre_ping=True)


def now_ms() -> int:
    return int(time.time() * 1000)


def edge_record(
    child_model_id: str, parent_model_id: str, project: str, model_type: str, improvement: dict
) -> dict:
    """The lineage edge :meth:`HokusaiStore.record_improvement` stores, from an improvement
    (``core.metrics.compute_improvement``)."""
    return {
        "child_model_id": child_model_id,
        "parent_model_id": parent_model_id,
        "project": project,
        "model_type": model_type,
        "benchmark_metric": improvement["benchmark_metric"],
        "baseline_score_bps": improvement["baseline_score_bps"],
        "candidate_score_bps": improvement["candidate_score_bps"],
        "delta_one_bps": improvement["delta_one_bps"],
        "metric_deltas": canonical_json(improvement["metric_deltas"]).decode(),
    }


def contribution_records(model_id: str, project: str, attributed: Sequence[dict]) -> list[dict]:
    """The contributions stored with an improvement, from the attributed contributors
    (``core.contributors.attribute``)."""
    return [
        {
            "address": to_checksum_address(entry["address"]),
            "model_id": model_id,
            "project": project,
            "weight_bps": entry["weight_bps"],
            "samples": entry.get("samples"),
            "attributed_bps": entry["attributed_bps"],
        }
        for entry in attributed
    ]


class HokusaiStore:
    """The plugin tables of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(bind=engine, expire_on_commit=False)

    @classmethod
    def from_store_uri(cls, store_uri: str) -> HokusaiStore:
        return cls(make_engine(store_uri))

    # -- writes -------------------------------------------------------------------------------

    def record_improvement(self, edge: dict, document: dict, contributions: Sequence[dict]) -> dict:
        """Store the edge, the attestation and the contributions of one improvement, atomically.

        Returns the attestation document that is stored: ``document`` itself, or the one a
        concurrent writer stored first for the same (version, baseline).
        """
        created_at = now_ms()
        try:
            with self.sessions.begin() as session:
                session.add(
                    Attestation(
                        id=document["id"],
                        model_id=document["model_id"],
                        baseline_model_id=document["baseline_model_id"],
                        attester=document["attester"],
                        status=document["status"],
                        created_at=created_at,
                        document=canonical_json(document).decode(),
                    )
                )
                session.flush()
                session.add(LineageEdge(**edge, attestation_id=document["id"], created_at=created_at))
                session.add_all(
                    Contribution(**entry, attestation_id=document["id"], created_at=created_at)
                    for entry in contributions
                )
                _add_to_totals(session, contributions, created_at)
            return document
        except IntegrityError:
            existing = self.attestation_for(document["model_id"], document["baseline_model_id"])
            if existing is None:
                raise
            return existing

    def record_unattested_improvement(self, edge: dict, contributions: Sequence[dict]) -> bool:
        """Store the edge and contributions of an improvement that has no attestation (a migrated
        one), atomically; False when the version already has an edge (nothing is written)."""
        created_at = now_ms()
        try:
            with self.sessions.begin() as session:
                session.add(LineageEdge(**edge, attestation_id=None, created_at=created_at))
                session.add_all(
                    Contribution(**entry, attestation_id=None, created_at=created_at)
                    for entry in contributions
                )
                _add_to_totals(session, contributions, created_at)
            return True
        except IntegrityError:
            if self.edge_of(edge["child_model_id"]) is None:
                raise
            return False

    # -- reads --------------------------------------------------------------------------------

    def attestation_for(self, model_id: str, baseline_model_id: str | None = None) -> dict | None:
        query = select(Attestation.document).where(Attestation.model_id == model_id)
        if baseline_model_id is not None:
            query = query.where(Attestation.baseline_model_id == baseline_model_id)
        with self.sessions() as session:
            found = session.execute(query.order_by(Attestation.created_at.desc()).limit(1)).scalar()
        return json.loads(found) if found else None

    def get_attestation(self, attestation_id: str) -> dict | None:
        with self.sessions() as session:
            found = session.get(Attestation, attestation_id)
        return json.loads(found.document) if found else None

    def list_attestations(self, model_id: str) -> list[dict]:
        with self.sessions() as session:
            rows = session.execute(
                select(Attestation.document)
                .where(Attestation.model_id == model_id)
                .order_by(Attestation.created_at)
            ).scalars()
            return [json.loads(row) for row in rows]

    def edge_of(self, child_model_id: str) -> dict | None:
        with self.sessions() as session:
            edge = session.execute(
                select(LineageEdge).where(LineageEdge.child_model_id == child_model_id)
            ).scalar_one_or_none()
            return _edge_dict(edge) if edge else None

    def lineage(self, model_id: str, *, direction: str = "both", max_depth: int | None = None) -> dict:
        """The edges reachable from ``model_id``: ``upstream`` to the root, ``downstream`` to leaves.

        One recursive SQL query per direction (PostgreSQL and SQLite both speak WITH RECURSIVE).
        ``model_id`` may be ``name/version`` or a bare registered-model name (every version of it).
        """
        depth_limit = max_depth if max_depth is not None else 1_000_000
        starts = self._start_nodes(model_id)
        edges: dict[str, dict] = {}
        with self.sessions() as session:
            if direction in ("both", "upstream"):
                for row in session.execute(_UPSTREAM, {"starts": starts, "limit": depth_limit}).mappings():
                    edges[row["child_model_id"]] = {**_row_dict(row), "depth": -row["depth"]}
            if direction in ("both", "downstream"):
                for row in session.execute(_DOWNSTREAM, {"starts": starts, "limit": depth_limit}).mappings():
                    edges.setdefault(row["child_model_id"], {**_row_dict(row), "depth": row["depth"]})
        return {
            "start": starts,
            "edges": sorted(edges.values(), key=lambda e: (e["depth"], e["child_model_id"])),
        }

    def contributor_impact(
        self,
        address: str,
        *,
        max_results: int = 100,
        after: tuple[int, int] | None = None,
        project: str | None = None,
    ) -> dict:
        """Totals and one page of a contributor's contributions (oldest first).

        ``after`` is the (created_at, id) of the last contribution of the previous page: keyset
        pagination, so a page costs the same however deep it is. ``project`` limits it all to one
        project (a project-scoped API key).
        """
        mine = [Contribution.address == address]
        totals_query = select(ContributorTotal).where(ContributorTotal.address == address)
        if project is not None:
            mine.append(Contribution.project == project)
            totals_query = totals_query.where(ContributorTotal.project == project)
        with self.sessions() as session:
            per_project = session.execute(totals_query.order_by(ContributorTotal.project)).scalars().all()
            page_query = select(Contribution).where(*mine)
            if after is not None:
                page_query = page_query.where(
                    or_(
                        Contribution.created_at > after[0],
                        and_(Contribution.created_at == after[0], Contribution.id > after[1]),
                    )
                )
            rows = (
                session.execute(
                    page_query.order_by(Contribution.created_at, Contribution.id).limit(max_results + 1)
                )
                .scalars()
                .all()
            )
        has_more = len(rows) > max_results
        rows = rows[:max_results]
        return {
            "address": address,
            "total_models_improved": sum(row.models_improved for row in per_project),
            "total_attributed_bps": sum(row.attributed_bps for row in per_project),
            "projects": {
                row.project: {"models_improved": row.models_improved, "attributed_bps": row.attributed_bps}
                for row in per_project
            },
            "first_contribution": min((row.first_contribution for row in per_project), default=None),
            "last_contribution": max((row.last_contribution for row in per_project), default=None),
            "contributions": [_contribution_dict(row) for row in rows],
            "next": (rows[-1].created_at, rows[-1].id) if has_more else None,
        }

    def projects(self) -> list[dict]:
        """Every project with an attested improvement: models improved and DeltaOne awarded."""
        with self.sessions() as session:
            rows = session.execute(
                select(
                    LineageEdge.project,
                    func.count(LineageEdge.id),
                    func.coalesce(func.sum(LineageEdge.delta_one_bps), 0),
                    func.max(LineageEdge.created_at),
                )
                .group_by(LineageEdge.project)
                .order_by(LineageEdge.project)
            ).all()
        return [
            {"project": r[0], "improvements": r[1], "delta_one_bps": int(r[2]), "last_improvement": r[3]}
            for r in rows
        ]

    def _start_nodes(self, model_id: str) -> list[str]:
        if "/" in model_id:
            return [model_id]
        with self.sessions() as session:
            rows = session.execute(
                text(
                    "SELECT child_model_id AS m FROM hokusai_lineage_edges WHERE child_model_id LIKE :p "
                    "UNION SELECT parent_model_id FROM hokusai_lineage_edges WHERE parent_model_id LIKE :p"
                ),
                {"p": model_id.replace("%", r"\%").replace("_", r"\_") + "/%"},
            ).scalars()
            return sorted(set(rows)) or [model_id]


# One statement that SQLite (3.24+) and PostgreSQL both understand.
_ADD_TO_TOTALS = text(
    """
    INSERT INTO hokusai_contributor_totals
        (address, project, models_improved, attributed_bps, first_contribution, last_contribution)
    VALUES (:address, :project, :models_improved, :attributed_bps, :created_at, :created_at)
    ON CONFLICT (address, project) DO UPDATE SET
        models_improved = hokusai_contributor_totals.models_improved + excluded.models_improved,
        attributed_bps = hokusai_contributor_totals.attributed_bps + excluded.attributed_bps,
        first_contribution = CASE
            WHEN excluded.first_contribution < hokusai_contributor_totals.first_contribution
            THEN excluded.first_contribution ELSE hokusai_contributor_totals.first_contribution END,
        last_contribution = CASE
            WHEN excluded.last_contribution > hokusai_contributor_totals.last_contribution
            THEN excluded.last_contribution ELSE hokusai_contributor_totals.last_contribution END
    """
)


def _add_to_totals(session: Any, contributions: Sequence[dict], created_at: int) -> None:
    """Add one improvement's contributions to the per-(address, project) totals, in its transaction.

    Rows are upserted in address order, so two improvements sharing contributors lock them in the
    same order and cannot deadlock.
    """
    added: dict[tuple[str, str], dict] = {}
    for entry in contributions:
        key = (entry["address"], entry["project"])
        total = added.setdefault(
            key,
            {"address": key[0], "project": key[1], "models_improved": 0, "attributed_bps": 0},
        )
        total["models_improved"] += 1  # one contribution per (address, model version)
        total["attributed_bps"] += entry["attributed_bps"]
    if added:
        session.flush()  # the contributions first: a duplicate fails before any total moves
        session.execute(_ADD_TO_TOTALS, [{**added[key], "created_at": created_at} for key in sorted(added)])


_EDGE_COLUMNS = (
    "child_model_id, parent_model_id, project, model_type, benchmark_metric, baseline_score_bps, "
    "candidate_score_bps, delta_one_bps, metric_deltas, attestation_id, created_at"
)
_E_EDGE_COLUMNS = ", ".join("e." + c.strip() for c in _EDGE_COLUMNS.split(","))


def _recursive(direction: str):
    """Walk parent links up to the root, or child links down to the leaves.

    UNION (not UNION ALL) makes a cycle terminate; ``:limit`` bounds the depth.
    """
    if direction == "up":
        seed = "SELECT child_model_id, 1 FROM hokusai_lineage_edges WHERE child_model_id IN :starts"
        step = (
            "SELECT e.parent_model_id, walk.depth + 1 FROM hokusai_lineage_edges e "
            "JOIN walk ON e.child_model_id = walk.node WHERE walk.depth < :limit"
        )
    else:
        seed = "SELECT child_model_id, 1 FROM hokusai_lineage_edges WHERE parent_model_id IN :starts"
        step = (
            "SELECT e.child_model_id, walk.depth + 1 FROM hokusai_lineage_edges e "
            "JOIN walk ON e.parent_model_id = walk.node WHERE walk.depth < :limit"
        )
    sql = f"""
        WITH RECURSIVE walk(node, depth) AS ({seed} UNION {step})
        SELECT {_E_EDGE_COLUMNS}, MIN(walk.depth) AS depth
        FROM walk JOIN hokusai_lineage_edges e ON e.child_model_id = walk.node
        GROUP BY {_E_EDGE_COLUMNS}
    """
    return text(sql).bindparams(bindparam("starts", expanding=True))


_UPSTREAM = _recursive("up")
_DOWNSTREAM = _recursive("down")


def _row_dict(row: Any) -> dict:
    return {
        "child_model_id": row["child_model_id"],
        "parent_model_id": row["parent_model_id"],
        "project": row["project"],
        "model_type": row["model_type"],
        "benchmark_metric": row["benchmark_metric"],
        "baseline_score_bps": row["baseline_score_bps"],
        "candidate_score_bps": row["candidate_score_bps"],
        "delta_one_bps": row["delta_one_bps"],
        "metric_deltas": json.loads(row["metric_deltas"]),
        "attestation_id": row["attestation_id"],
        "created_at": row["created_at"],
    }


def _edge_dict(edge: LineageEdge) -> dict:
    return _row_dict(
        {column: getattr(edge, column) for column in (c.strip() for c in _EDGE_COLUMNS.split(","))}
    )


def _contribution_dict(row: Contribution) -> dict:
    return {
        "address": row.address,
        "model_id": row.model_id,
        "project": row.project,
        "weight_bps": row.weight_bps,
        "samples": row.samples,
        "attributed_bps": row.attributed_bps,
        "attestation_id": row.attestation_id,
        "created_at": row.created_at,
    }
