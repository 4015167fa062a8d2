"""The lineage graph's cumulative DeltaOne: linear walk against the plain walk-to-the-root."""

import random

import pytest

from mlflow_hokusai_plugin.core.lineage import cumulative_deltas, lineage_graph


def _walk_to_root(by_child: dict, child: str) -> int:
    """The definition: sum the edges from ``child`` towards the root, each edge once."""
    total, seen, cursor = 0, set(), child
    while cursor in by_child and cursor not in seen:
        seen.add(cursor)
        total += by_child[cursor]["delta_one_bps"]
        cursor = by_child[cursor]["parent_model_id"]
    return total


def _random_forest(rng: random.Random, size: int, cycles: bool) -> dict:
    """Edges keyed by child: each child has one parent, as the unique constraint guarantees."""
    by_child = {}
    for n in range(1, size):
        parent = rng.randrange(0, n)  # an earlier node: a forest, no cycle
        if cycles and rng.random() < 0.1:
            parent = rng.randrange(0, size)  # anywhere: may close a cycle
        by_child[f"m/{n}"] = {"parent_model_id": f"m/{parent}", "delta_one_bps": rng.randrange(-500, 2000)}
    return by_child


@pytest.mark.parametrize("cycles", [False, True])
def test_cumulative_deltas_match_the_walk_to_the_root(cycles):
    rng = random.Random(7)
    for _ in range(200):
        by_child = _random_forest(rng, rng.randrange(1, 40), cycles)
        expected = {child: _walk_to_root(by_child, child) for child in by_child}
        assert cumulative_deltas(by_child) == expected


def test_a_cycle_totals_the_whole_cycle_and_its_tail_adds_on():
    by_child = {
        "m/1": {"parent_model_id": "m/2", "delta_one_bps": 10},
        "m/2": {"parent_model_id": "m/1", "delta_one_bps": 20},
        "m/3": {"parent_model_id": "m/2", "delta_one_bps": 5},
    }
    assert cumulative_deltas(by_child) == {"m/1": 30, "m/2": 30, "m/3": 35}


def test_a_chain_of_a_thousand_edges_is_summed_from_the_root():
    edges = [
        {"child_model_id": f"m/{n + 1}", "parent_model_id": f"m/{n}", "delta_one_bps": 3, "depth": n - 1001}
        for n in range(1, 1001)
    ]
    graph = lineage_graph("m/1001", "upstream", edges)
    assert graph["root"] == "m/1"
    assert graph["cumulative_delta_one_bps"] == 3000
    assert [edge["cumulative_delta_one_bps"] for edge in graph["edges"]] == [3 * n for n in range(1, 1001)]
    assert graph["nodes"][0] == {"model_id": "m/1", "depth": -1000}
