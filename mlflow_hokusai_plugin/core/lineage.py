"""The lineage graph a client sees: nodes, edges, and the improvement accumulated along the path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

LINEAGE_DIRECTIONS = ("both", "upstream", "downstream")

# The most hops any lineage walk takes, in SQL (``HokusaiStore.lineage``, the cycle check under the
# lineage lock) as in Python: above the deepest chain the benchmarks plan (10,000), low enough that
# a walk costs a worker a fraction of a second (~0.1 s for 10,000 hops on PostgreSQL). A lineage
# that goes on past it is answered cut there, flagged ``truncated``; the writers refuse an edge
# that would make a chain deeper than this.
MAX_LINEAGE_DEPTH = 20_000


def lineage_graph(
    model_id: str, direction: str, edges: Sequence[dict[str, Any]], *, truncated: bool = False
) -> dict:
    """Shape the edges found around ``model_id`` into nodes and edges.

    Each edge carries its own DeltaOne and ``cumulative_delta_one_bps``: the DeltaOne summed from
    the root baseline down to and including that edge (over the edges returned).

    Two keys appear only on a damaged lineage: ``cycle`` (the versions on a cycle among the edges
    returned, sorted: the writers refuse cycles, a table edited by hand can hold one; ``root`` is
    then None if the path up from ``model_id`` loops) and ``truncated`` (True: the walk stopped at
    :data:`MAX_LINEAGE_DEPTH` hops and there is more lineage beyond).

    >>> edge = {"child_model_id": "m/2", "parent_model_id": "m/1", "delta_one_bps": 300, "depth": -1}
    >>> graph = lineage_graph("m/2", "upstream", [edge])
    >>> graph["root"], graph["edges"][0]["cumulative_delta_one_bps"], graph["cumulative_delta_one_bps"]
    ('m/1', 300, 300)
    >>> loop = [
    ...     {"child_model_id": "m/1", "parent_model_id": "m/2", "delta_one_bps": 10, "depth": -1},
    ...     {"child_model_id": "m/2", "parent_model_id": "m/1", "delta_one_bps": 20, "depth": -2},
    ... ]
    >>> graph = lineage_graph("m/1", "upstream", loop)
    >>> graph["root"], graph["cycle"], graph["cumulative_delta_one_bps"]
    (None, ['m/1', 'm/2'], 30)
    """
    by_child = {edge["child_model_id"]: dict(edge) for edge in edges}
    totals, on_cycle = _totals_and_cycles(by_child)
    for child, total in totals.items():
        by_child[child]["cumulative_delta_one_bps"] = total
    nodes: dict[str, int] = {model_id: 0} if "/" in model_id else {}
    for edge in by_child.values():
        depth = edge.get("depth", 0)
        # Upstream edges have negative depths (-1: the start's own edge), downstream positive.
        nodes.setdefault(edge["child_model_id"], depth if depth > 0 else depth + 1)
        nodes.setdefault(edge["parent_model_id"], depth - 1 if depth > 0 else depth)
    here = by_child.get(model_id)
    graph = {
        "model_id": model_id,
        "direction": direction,
        "root": root_of(model_id, by_child) if "/" in model_id else None,
        "cumulative_delta_one_bps": here["cumulative_delta_one_bps"] if here else 0,
        "nodes": [
            {"model_id": node, "depth": depth}
            for node, depth in sorted(nodes.items(), key=lambda n: (n[1], n[0]))
        ],
        "edges": sorted(by_child.values(), key=lambda e: (e.get("depth", 0), e["child_model_id"])),
    }
    if on_cycle:
        graph["cycle"] = sorted(on_cycle)
    if truncated:
        graph["truncated"] = True
    return graph


def root_of(model_id: str, by_child: dict[str, dict[str, Any]]) -> str | None:
    """The root baseline above ``model_id`` following the edges given (keyed by child), or None
    when the path up loops (a cycle: there is no root). Each version is visited once.

    >>> root_of("m/3", {"m/3": {"parent_model_id": "m/2"}, "m/2": {"parent_model_id": "m/1"}})
    'm/1'
    >>> root_of("m/1", {"m/1": {"parent_model_id": "m/1"}}) is None
    True
    """
    seen = {model_id}
    root = model_id
    edge = by_child.get(model_id)
    while edge is not None:
        root = edge["parent_model_id"]
        if root in seen:
            return None
        seen.add(root)
        edge = by_child.get(root)
    return root


def cumulative_deltas(by_child: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Each edge's DeltaOne summed from the root down to it, keyed by the edge's child.

    Linear in the number of edges: a walk towards the root stops at the first edge whose total is
    already known, then fills in the totals on its way back down. (Walking every edge to the root
    was quadratic: 80 % of a depth-1000 lineage request.) On a cycle, which the writers prevent but
    a hand-edited table could hold, every edge of the cycle totals the whole cycle.

    >>> chain = {
    ...     "m/2": {"parent_model_id": "m/1", "delta_one_bps": 100},
    ...     "m/3": {"parent_model_id": "m/2", "delta_one_bps": 50},
    ... }
    >>> cumulative_deltas(chain)
    {'m/2': 100, 'm/3': 150}
    """
    return _totals_and_cycles(by_child)[0]


def cycle_members(by_child: dict[str, dict[str, Any]]) -> set[str]:
    """The children whose edges lie on a cycle (each child has one parent, so every cycle is a
    loop of parent links); empty for a sound lineage. Linear in the number of edges.

    >>> sorted(cycle_members({"a/1": {"parent_model_id": "a/2"}, "a/2": {"parent_model_id": "a/1"},
    ...                       "a/3": {"parent_model_id": "a/1"}}))
    ['a/1', 'a/2']
    """
    return _totals_and_cycles({c: {"delta_one_bps": 0, **e} for c, e in by_child.items()})[1]


def _totals_and_cycles(by_child: dict[str, dict[str, Any]]) -> tuple[dict[str, int], set[str]]:
    """:func:`cumulative_deltas` and :func:`cycle_members` in one linear pass."""
    totals: dict[str, int] = {}
    on_cycle: set[str] = set()
    for start in by_child:
        path: list[str] = []
        position: dict[str, int] = {}
        cursor = start
        while cursor in by_child and cursor not in totals and cursor not in position:
            position[cursor] = len(path)
            path.append(cursor)
            cursor = by_child[cursor]["parent_model_id"]
        if cursor in position:
            cycle = path[position[cursor] :]
            cycle_total = sum(by_child[child]["delta_one_bps"] for child in cycle)
            totals.update(dict.fromkeys(cycle, cycle_total))
            on_cycle.update(cycle)
            path = path[: position[cursor]]
        total = totals.get(cursor, 0)
        for child in reversed(path):
            total += by_child[child]["delta_one_bps"]
            totals[child] = total
    return totals, on_cycle
