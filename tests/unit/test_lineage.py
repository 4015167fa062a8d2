"""The lineage graph: cumulative DeltaOne (linear walk against the plain walk to the root), and
answers that stay finite on a cycle a hand-edited table could hold."""

import random

import pytest

from mlflow_hokusai_plugin.core.lineage import (
    MAX_LINEAGE_DEPTH,
    cumulative_deltas,
    cycle_members,
    lineage_graph,
    root_of,
)


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


# -- cycles and bounds: a table edited by hand must not hang a worker -------------------------------


def _edges(pairs: list[tuple[str, str]], depth_of=lambda n: -1 - n) -> list[dict]:
    return [
        {"child_model_id": child, "parent_model_id": parent, "delta_one_bps": 10, "depth": depth_of(n)}
        for n, (child, parent) in enumerate(pairs)
    ]


def _cycle_members_by_walking(by_child: dict) -> set:
    """The definition: a child is on a cycle when walking up from it comes back to it."""
    members = set()
    for start in by_child:
        seen, cursor = set(), by_child[start]["parent_model_id"]
        while cursor in by_child and cursor not in seen and cursor != start:
            seen.add(cursor)
            cursor = by_child[cursor]["parent_model_id"]
        if cursor == start:
            members.add(start)
    return members


@pytest.mark.parametrize("cycles", [False, True])
def test_cycle_members_match_the_walk_back_to_itself(cycles):
    rng = random.Random(11)
    for _ in range(200):
        by_child = _random_forest(rng, rng.randrange(1, 40), cycles)
        assert cycle_members(by_child) == _cycle_members_by_walking(by_child)


def test_a_sound_lineage_has_no_cycle_key_and_no_truncated_key():
    graph = lineage_graph("m/3", "upstream", _edges([("m/3", "m/2"), ("m/2", "m/1")]))
    assert graph["root"] == "m/1"
    assert "cycle" not in graph and "truncated" not in graph


@pytest.mark.parametrize(
    ("model_id", "pairs", "on_cycle"),
    [
        ("m/1", [("m/1", "m/2"), ("m/2", "m/1")], ["m/1", "m/2"]),  # two versions, each the other's baseline
        ("m/1", [("m/1", "m/1")], ["m/1"]),  # its own baseline
        ("m/1", [("m/1", "m/2"), ("m/2", "m/3"), ("m/3", "m/4"), ("m/4", "m/2")], ["m/2", "m/3", "m/4"]),
    ],
    ids=["two-cycle", "self-loop", "tail-into-a-cycle"],
)
def test_a_cycle_is_answered_with_no_root_and_its_members_named(model_id, pairs, on_cycle):
    graph = lineage_graph(model_id, "upstream", _edges(pairs))
    assert graph["root"] is None  # the path up never reaches a root
    assert graph["cycle"] == on_cycle
    assert {e["child_model_id"] for e in graph["edges"]} == {child for child, _ in pairs}
    assert {n["model_id"] for n in graph["nodes"]} == {m for pair in pairs for m in pair}


def test_a_cycle_beside_the_path_up_still_finds_the_root_and_is_named():
    # Downstream of m/1 (a bare-name or "both" answer can hold edges off the path up).
    pairs = [("m/2", "m/1"), ("x/1", "x/2"), ("x/2", "x/1")]
    graph = lineage_graph("m/2", "both", _edges(pairs))
    assert graph["root"] == "m/1"
    assert graph["cycle"] == ["x/1", "x/2"]


def test_root_of_visits_each_version_once_on_a_long_cycle():
    size = 50_000
    by_child = {f"m/{n}": {"parent_model_id": f"m/{(n + 1) % size}"} for n in range(size)}
    assert root_of("m/0", by_child) is None
    by_child["m/49999"] = {"parent_model_id": "root/1"}
    assert root_of("m/0", by_child) == "root/1"


def test_truncated_is_said_only_when_the_walk_was_cut():
    edges = _edges([("m/2", "m/1")])
    assert lineage_graph("m/2", "upstream", edges, truncated=True)["truncated"] is True
    assert "truncated" not in lineage_graph("m/2", "upstream", edges, truncated=False)


def test_the_depth_bound_is_above_the_deepest_chain_the_benchmarks_plan():
    assert 10_000 < MAX_LINEAGE_DEPTH <= 100_000
