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
    for edge in by_child.values():
        total, seen, cursor = 0, set(), edge
        # Walk to the root through the edges we have; ``seen`` guards against a cycle.
        while cursor is not None and cursor["child_model_id"] not in seen:
            seen.add(cursor["child_model_id"])
            total += cursor["delta_one_bps"]
            cursor = by_child.get(cursor["parent_model_id"])
        edge["cumulative_delta_one_bps"] = total
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
