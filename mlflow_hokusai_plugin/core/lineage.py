"""The lineage graph a client sees: nodes, edges, and the improvement accumulated along the path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

LINEAGE_DIRECTIONS = ("both", "upstream", "downstream")


def lineage_graph(model_id: str, direction: str, edges: Sequence[dict[str, Any]]) -> dict:
    """Shape the edges found around ``model_id`` into nodes and edges.

    Each edge carries its own DeltaOne and ``cumulative_delta_one_bps``: the DeltaOne summed from
    the root baseline down to and including that edge (over the edges returned).

    >>> edge = {"child_model_id": "m/2", "parent_model_id": "m/1", "delta_one_bps": 300, "depth": -1}
    >>> graph = lineage_graph("m/2", "upstream", [edge])
    >>> graph["root"], graph["edges"][0]["cumulative_delta_one_bps"], graph["cumulative_delta_one_bps"]
    ('m/1', 300, 300)
    """
    by_child = {edge["child_model_id"]: dict(edge) for edge in edges}
    for child, total in cumulative_deltas(by_child).items():
        by_child[child]["cumulative_delta_one_bps"] = total
    nodes: dict[str, int] = {model_id: 0} if "/" in model_id else {}
    for edge in by_child.values():
        depth = edge.get("depth", 0)
        # Upstream edges have negative depths (-1: the start's own edge), downstream positive.
        nodes.setdefault(edge["child_model_id"], depth if depth > 0 else depth + 1)
        nodes.setdefault(edge["parent_model_id"], depth - 1 if depth > 0 else depth)
    root = model_id
    cursor = by_child.get(model_id)
    while cursor is not None and cursor["parent_model_id"] != root:
        root = cursor["parent_model_id"]
        cursor = by_child.get(root)
    here = by_child.get(model_id)
    return {
        "model_id": model_id,
        "direction": direction,
        "root": root if "/" in model_id else None,
        "cumulative_delta_one_bps": here["cumulative_delta_one_bps"] if here else 0,
        "nodes": [
            {"model_id": node, "depth": depth}
            for node, depth in sorted(nodes.items(), key=lambda n: (n[1], n[0]))
        ],
        "edges": sorted(by_child.values(), key=lambda e: (e.get("depth", 0), e["child_model_id"])),
    }


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
    totals: dict[str, int] = {}
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
            path = path[: position[cursor]]
        total = totals.get(cursor, 0)
        for child in reversed(path):
            total += by_child[child]["delta_one_bps"]
            totals[child] = total
    return totals
