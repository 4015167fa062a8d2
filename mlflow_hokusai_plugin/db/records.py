"""Reads and writes of the plugin tables: lineage edges, attestations, contributions.

Writes of one improvement happen in one transaction and are idempotent: a second writer of the
same facts (a concurrent request, the reconciler) hits a unique constraint, rolls back, and gets
the facts that won.

The lineage is a forest: each version has at most one parent (the unique child column) and no
version descends from itself. The writers keep it so under any concurrency: the transaction that
inserts an edge holds the lineage lock (PostgreSQL: one transaction-scoped advisory lock; SQLite:
the database write lock, which its first insert takes) while it checks, after its insert, that
the new edge's parent does not descend from its child. Every walk of the lineage also stops on a
cycle and at :data:`MAX_LINEAGE_DEPTH` hops, so a table edited by hand cannot hang a worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, create_engine, event, func, or_, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.canonical import canonical_json
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.lineage import MAX_LINEAGE_DEPTH
from mlflow_hokusai_plugin.db.models import Attestation, Contribution, ContributorTotal, LineageEdge
from mlflow_hokusai_plugin.db.urls import database_url

# The key of the PostgreSQL advisory lock every lineage-edge write takes ("hklineag" in ASCII; not
# the migrations' key). One lock for all edge writes, not one per lineage: two edges can close a
# cycle only together, from any two places in the graph, and a per-tree key cannot be known before
# the walk it is meant to protect. Edge writes are short (the signing and the artifact digests are
# done before the transaction) and rare next to reads, which take no lock.
LINEAGE_LOCK_KEY = int.from_bytes(b"hklineag", "big")


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
        concurrent writer stored first for the same (version, baseline). Raises ValidationError
        (``hokusai.baseline``), with nothing written, if the edge would close a lineage cycle or
        make a chain deeper than MAX_LINEAGE_DEPTH.
        """
        created_at = now_ms()
        try:
            with self.sessions.begin() as session:
                _lock_lineage(session)
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
                session.flush()  # a duplicate fails here, before the cycle check
                _refuse_a_cycle(session, edge["child_model_id"], edge["parent_model_id"])
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
        one), atomically; False when the version already has an edge (nothing is written).
        ValidationError as :meth:`record_improvement` for a cycle or a chain too deep."""
        created_at = now_ms()
        try:
            with self.sessions.begin() as session:
                _lock_lineage(session)
                session.add(LineageEdge(**edge, attestation_id=None, created_at=created_at))
                session.flush()
                _refuse_a_cycle(session, edge["child_model_id"], edge["parent_model_id"])
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

    def replace_attestation(self, attestation_id: str, renew: Callable[[dict, str], dict]) -> dict | None:
        """Store ``renew(stored document, its model id now)`` in place of the stored document; the
        new document, or None when there is no such attestation.

        ``renew`` must keep the document's id (a renewal re-signs the EIP-712 part only). The
        write happens only if the row still holds the document ``renew`` saw, retried when a
        concurrent renewal got there first, so no renewal's signatures are lost from the history.
        """
        for _ in range(20):
            with self.sessions() as session:
                row = session.get(Attestation, attestation_id)
                if row is None:
                    return None
                seen, model_id = row.document, row.model_id
            renewed = renew(json.loads(seen), model_id)
            if renewed == json.loads(seen):
                return renewed
            if renewed["id"] != attestation_id:
                raise ValueError("a renewal must keep the attestation id")
            with self.sessions.begin() as session:
                result = session.execute(
                    update(Attestation)
                    .where(Attestation.id == attestation_id, Attestation.document == seen)
                    .values(document=canonical_json(renewed).decode())
                )
            if result.rowcount == 1:
                return renewed
        raise ValidationError("attestation_id", f"{attestation_id} is being renewed concurrently; try again")

    def contributed_samples(self, attestation_id: str) -> int:
        """The contributed rows of an attested improvement: the sum of its contributions' samples
        (0 when any contribution does not say)."""
        with self.sessions() as session:
            rows = (
                session.execute(
                    select(Contribution.samples).where(Contribution.attestation_id == attestation_id)
                )
                .scalars()
                .all()
            )
        return sum(rows) if rows and all(value is not None for value in rows) else 0

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

    def improvements_of(self, model_id: str, limit: int) -> tuple[list[dict], int]:
        """The edges of the latest ``limit`` improvements whose baseline is ``model_id`` (newest
        first, as :meth:`edge_of` gives them), and how many improvements of it there are in all."""
        with self.sessions() as session:
            total = session.execute(
                select(func.count()).select_from(LineageEdge).where(LineageEdge.parent_model_id == model_id)
            ).scalar_one()
            latest = session.execute(
                select(LineageEdge)
                .where(LineageEdge.parent_model_id == model_id)
                .order_by(LineageEdge.created_at.desc(), LineageEdge.id.desc())
                .limit(limit)
            ).scalars()
            return [_edge_dict(edge) for edge in latest], total

    def lineage(self, model_id: str, *, direction: str = "both", max_depth: int | None = None) -> dict:
        """The edges reachable from ``model_id``: ``upstream`` to the root, ``downstream`` to leaves.

        One recursive SQL query per direction (PostgreSQL and SQLite both speak WITH RECURSIVE).
        ``model_id`` may be ``name/version`` or a bare registered-model name (every version of it).
        Walks at most ``max_depth`` hops, and never more than MAX_LINEAGE_DEPTH: ``truncated`` is
        True when the lineage goes on past that bound (not past a smaller ``max_depth`` asked
        for). A cycle (only a hand-edited table can hold one) ends the walk where it closes.
        """
        cap = MAX_LINEAGE_DEPTH if max_depth is None else min(max_depth, MAX_LINEAGE_DEPTH)
        # At the hard bound, one hop more tells a lineage cut there from one that ends there.
        limit = cap + 1 if cap == MAX_LINEAGE_DEPTH else cap
        starts = self._start_nodes(model_id)
        edges: dict[str, dict] = {}
        truncated = False
        with self.sessions() as session:
            steps = _steps(session)
            if direction in ("both", "upstream"):
                for row in session.execute(_UPSTREAM[steps], {"starts": starts, "limit": limit}).mappings():
                    if row["depth"] > cap:
                        truncated = True
                        continue
                    edges[row["child_model_id"]] = {**_row_dict(row), "depth": -row["depth"]}
            if direction in ("both", "downstream"):
                for row in session.execute(_DOWNSTREAM[steps], {"starts": starts, "limit": limit}).mappings():
                    if row["depth"] > cap:
                        truncated = True
                        continue
                    edges.setdefault(row["child_model_id"], {**_row_dict(row), "depth": row["depth"]})
        return {
            "start": starts,
            "edges": sorted(edges.values(), key=lambda e: (e["depth"], e["child_model_id"])),
            "truncated": truncated,
        }

    def is_ancestor(self, candidate: str, model_id: str) -> bool:
        """Whether ``candidate`` is ``model_id`` or one of its baselines up to the root: an edge
        from ``candidate`` to ``model_id`` would close a cycle. One bounded walk up; False when
        the chain above ``model_id`` is deeper than MAX_LINEAGE_DEPTH and ``candidate`` was not
        met (the write refuses such a chain anyway)."""
        if candidate == model_id:
            return True
        with self.sessions() as session:
            found, _ = _ancestry(session, candidate, model_id)
        return found

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


# The two walks, as the body of ``WITH RECURSIVE walk(...) AS (...)``. Each row is a version
# reached (``node``) and its distance from the start (``depth``), so a cycle would repeat rows
# with ever larger depths: a UNION (set semantics) alone would not end it. Three guards end it,
# each O(1) per row, so a chain costs O(depth), not the O(depth^2) of an array of the path
# checked at every hop (what PostgreSQL's CYCLE clause does):
#
# - ``depth < :limit``: never more than MAX_LINEAGE_DEPTH hops, whatever the table holds;
# - a start is never walked through again (``NOT IN :starts``). Downstream this alone ends every
#   cycle: a version has one parent, so the only cycle a walk down can meet runs through its
#   start. It also keeps the walk of a bare name (every version of a model) linear;
# - upstream, where the walk can climb from its start into a cycle above it, the row carries a
#   ``mark``: the version it passed at the last power-of-two depth (Brent's cycle detection). A
#   row whose node is its mark has gone round a cycle and is not walked on; a cycle of length L
#   entered after T hops is noticed within about 2 * (T + L) hops.
#
# Each hop is one index lookup. On PostgreSQL the next edges are read in a LATERAL subquery that
# OFFSET 0 keeps from being flattened into a join: on a table not yet analyzed (just restored
# from a backup, or filled by hand) the planner otherwise hashes the whole table at every hop,
# O(depth * edges): two minutes instead of 0.3 s for a 20,000-deep chain. SQLite has no LATERAL,
# and its nested loops already use the index.
_UP_WALK = """
    SELECT child_model_id, 1, child_model_id
    FROM hokusai_lineage_edges WHERE child_model_id IN :starts
    UNION
    SELECT e.parent_model_id, walk.depth + 1,
        CASE WHEN (walk.depth & (walk.depth - 1)) = 0 THEN walk.node ELSE walk.mark END
    FROM {up_step}
    WHERE walk.depth < :limit AND (walk.depth = 1 OR walk.node <> walk.mark)
        AND e.parent_model_id NOT IN :starts
"""
_DOWN_WALK = """
    SELECT child_model_id, 1
    FROM hokusai_lineage_edges WHERE parent_model_id IN :starts
    UNION
    SELECT e.child_model_id, walk.depth + 1
    FROM {down_step}
    WHERE walk.depth < :limit AND walk.node NOT IN :starts
"""
_STEPS = {
    "join": {
        "up_step": "hokusai_lineage_edges e JOIN walk ON e.child_model_id = walk.node",
        "down_step": "hokusai_lineage_edges e JOIN walk ON e.parent_model_id = walk.node",
    },
    "lateral": {
        "up_step": "walk CROSS JOIN LATERAL (SELECT parent_model_id FROM hokusai_lineage_edges"
        " WHERE child_model_id = walk.node OFFSET 0) e",
        "down_step": "walk CROSS JOIN LATERAL (SELECT child_model_id FROM hokusai_lineage_edges"
        " WHERE parent_model_id = walk.node OFFSET 0) e",
    },
}


def _recursive(direction: str, steps: str):
    """Walk parent links up to the root, or child links down to the leaves: every edge reached,
    once, at its smallest depth. See _UP_WALK and _DOWN_WALK for why it always ends."""
    columns, walk = ("node, depth, mark", _UP_WALK) if direction == "up" else ("node, depth", _DOWN_WALK)
    sql = f"""
        WITH RECURSIVE walk({columns}) AS ({walk.format(**_STEPS[steps])})
        SELECT {_E_EDGE_COLUMNS}, MIN(walk.depth) AS depth
        FROM walk JOIN hokusai_lineage_edges e ON e.child_model_id = walk.node
        GROUP BY {_E_EDGE_COLUMNS}
    """
    return text(sql).bindparams(bindparam("starts", expanding=True))


def _ancestry_query(steps: str):
    """Whether :candidate is met walking up from :starts (its baselines to the root), and how deep
    the walk went: the cycle check of an edge :candidate -> start."""
    sql = f"""
        WITH RECURSIVE walk(node, depth, mark) AS ({_UP_WALK.format(**_STEPS[steps])})
        SELECT COALESCE(MAX(CASE WHEN node = :candidate THEN 1 ELSE 0 END), 0), COALESCE(MAX(depth), 0)
        FROM walk
    """
    return text(sql).bindparams(bindparam("starts", expanding=True))


# Per dialect: "lateral" on PostgreSQL, "join" elsewhere (SQLite).
_UPSTREAM = {steps: _recursive("up", steps) for steps in _STEPS}
_DOWNSTREAM = {steps: _recursive("down", steps) for steps in _STEPS}
_ANCESTRY = {steps: _ancestry_query(steps) for steps in _STEPS}


def _steps(session: Any) -> str:
    return "lateral" if session.get_bind().dialect.name == "postgresql" else "join"


def _ancestry(session: Any, candidate: str, start: str) -> tuple[bool, int]:
    """(``candidate`` is among the versions walking up from ``start``, the walk's depth)."""
    found, depth = session.execute(
        _ANCESTRY[_steps(session)],
        {"starts": [start], "candidate": candidate, "limit": MAX_LINEAGE_DEPTH + 1},
    ).one()
    return bool(found), int(depth)


def _lock_lineage(session: Any) -> None:
    """Take the lineage lock for the rest of the transaction: edge writes are serialised, so the
    cycle check of one sees every edge committed before it, and no other is committed meanwhile.

    PostgreSQL: the transaction-scoped advisory lock (released by commit or rollback). SQLite
    serialises writers itself: the transaction's first insert takes the database write lock and
    keeps it to the end, and the check comes after that insert.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LINEAGE_LOCK_KEY})


def _refuse_a_cycle(session: Any, child: str, parent: str) -> None:
    """Raise ValidationError (the transaction then rolls back) if the edge ``child -> parent``,
    just inserted under the lineage lock, closes a cycle or makes a chain deeper than the bound."""
    if child == parent:
        raise ValidationError(T.BASELINE, f"{child} cannot be its own baseline: a cycle")
    found, depth = _ancestry(session, child, parent)
    if found:
        raise ValidationError(T.BASELINE, f"{parent} descends from {child}: a cycle")
    if depth > MAX_LINEAGE_DEPTH:  # the walk reached its last hop: the chain would be longer
        raise ValidationError(
            T.BASELINE,
            f"{parent} is at least {depth - 1} improvements from its root; a lineage chain holds "
            f"at most {MAX_LINEAGE_DEPTH}",
        )


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
