"""Check a database filled by ``benchmarks/seed.py`` through the real stores, before benchmarking it.

    python benchmarks/check_seed.py --summary seed.json \\
        --database-url postgresql+psycopg2://postgres@127.0.0.1:5432/hokusai_bench

Bulk SQL bypasses every check the stores make, so this reads the seed back the way the servers
will: MLflow's registry store (``get_model_version``, ``search_model_versions``) and tracking store
(``get_run``), and the plugin's ``HokusaiStore`` (``lineage``, ``contributor_impact``,
``get_attestation``); and it checks the invariants the plugin relies on over the whole database
with a few SQL aggregates. Counts are checked as "at least" the seeded ones, so a database that a
benchmark has since registered more versions into still passes. Exits 1 naming each failed check.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import verify_document
from mlflow_hokusai_plugin.core.metrics import to_bps
from mlflow_hokusai_plugin.db.records import HokusaiStore
from mlflow_hokusai_plugin.db.urls import database_url

IMPROVEMENT_TAGS = (
    T.PROJECT,
    T.MODEL_TYPE,
    T.BASELINE,
    T.BENCHMARK_METRIC,
    T.CONTRIBUTORS,
    T.DELTA_ONE_BPS,
    T.ATTESTATION_STATUS,
    T.ATTESTATION_ID,
    T.ATTESTER,
)


class Checks:
    def __init__(self, url: str, summary: dict) -> None:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

        self.summary = summary
        self.registry = RegistryStore(url)
        self.tracking = TrackingStore(url, summary["parameters"]["artifact_root"])
        self.engine = create_engine(url)
        self.hokusai = HokusaiStore(self.engine)

    def close(self) -> None:
        for engine in (self.registry.engine, self.tracking.engine, self.engine):
            engine.dispose()

    def sql(self, query: str, **params):
        with self.engine.connect() as connection:
            return connection.execute(text(query), params).all()

    # -- MLflow's stores ------------------------------------------------------------------------

    def check_counts(self) -> str:
        for table, seeded in self.summary["counts"].items():
            found = self.sql(f"SELECT count(*) FROM {table}")[0][0]  # table names come from our own summary
            assert found >= seeded, f"{table}: {found} rows, the seed wrote {seeded}"
        return f"{len(self.summary['counts'])} tables hold at least the seeded rows"

    def check_get_model_version(self) -> str:
        deep = self.summary["lineage"][str(self.summary["parameters"]["max_depth"])]
        name, leaf = deep["model_id"].split("/")
        mv = self.registry.get_model_version(name, leaf)
        assert mv.status == "READY", f"{name}/{leaf} status {mv.status}"
        assert mv.source == f"runs:/{mv.run_id}/model", f"{name}/{leaf} source {mv.source}"
        missing = [key for key in IMPROVEMENT_TAGS if not mv.tags.get(key)]
        assert not missing, f"{name}/{leaf} lacks tags {missing}"
        assert mv.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
        assert mv.tags[T.BASELINE] == f"{name}/{int(leaf) - 1}", mv.tags[T.BASELINE]
        parsed = T.parse_improvement_tags(mv.tags)  # the server's own validation of client tags
        assert sum(c["weight_bps"] for c in parsed["contributors"]) == 10000
        root = self.registry.get_model_version(name, "1")
        assert T.BASELINE not in root.tags, "version 1 (a chain root) names a baseline"
        assert root.tags.get(T.ATTESTATION_STATUS) == T.STATUS_NOT_APPLICABLE, root.tags
        sample = self.summary["sample_version"]
        other = self.registry.get_model_version(sample["name"], sample["version"])
        assert other.tags.get(T.PROJECT), f"{sample} has no {T.PROJECT} tag"
        return f"{name}/{leaf}, {name}/1 and {sample['name']}/{sample['version']} with their tags"

    def check_search_model_versions(self) -> str:
        deep = self.summary["deep_model"]
        expected = self.summary["parameters"]["max_depth"] + 1
        found, token = [], None
        while True:
            page = self.registry.search_model_versions(f"name = '{deep}'", max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        assert len(found) >= expected, f"{deep}: {len(found)} versions, expected {expected}"
        versions = {int(mv.version) for mv in found}
        assert set(range(1, expected + 1)) <= versions, f"{deep}: versions missing"
        untagged = [mv.version for mv in found if int(mv.version) > 1 and not mv.tags.get(T.ATTESTATION_ID)]
        assert not untagged, f"{deep}: versions without {T.ATTESTATION_ID}: {untagged[:5]}"
        project = self.summary["projects"][0]
        tagged = self.registry.search_model_versions(f"tags.`{T.PROJECT}` = '{project}'", max_results=50)
        assert len(tagged) == 50, f"search by {T.PROJECT} found {len(tagged)} of 50"
        assert all(mv.tags[T.PROJECT] == project for mv in tagged)
        return f"{len(found)} versions of {deep}; 50 of project {project} by tag filter"

    def check_get_run(self) -> str:
        deep = self.summary["lineage"][str(self.summary["parameters"]["max_depth"])]
        name, leaf = deep["model_id"].split("/")
        mv = self.registry.get_model_version(name, leaf)
        parent = self.registry.get_model_version(name, str(int(leaf) - 1))
        run, parent_run = self.tracking.get_run(mv.run_id), self.tracking.get_run(parent.run_id)
        metric = mv.tags[T.BENCHMARK_METRIC]
        assert run.info.status == "FINISHED", run.info.status
        assert metric in run.data.metrics, f"run {mv.run_id} lacks metric {metric}"
        digest = run.data.tags.get(T.BENCHMARK_DATASET_DIGEST)
        assert digest and digest == parent_run.data.tags.get(T.BENCHMARK_DATASET_DIGEST), (
            "dataset digests differ"
        )
        edge = self.hokusai.edge_of(deep["model_id"])
        assert to_bps(run.data.metrics[metric]) == edge["candidate_score_bps"], "candidate score"
        assert to_bps(parent_run.data.metrics[metric]) == edge["baseline_score_bps"], "baseline score"
        return f"run {mv.run_id}: {metric}={run.data.metrics[metric]} matches its edge"

    # -- the plugin's store ---------------------------------------------------------------------

    def check_lineage(self) -> str:
        said = []
        for depth_text, entry in sorted(self.summary["lineage"].items(), key=lambda kv: int(kv[0])):
            depth, leaf = int(depth_text), entry["model_id"]
            edges = self.hokusai.lineage(leaf)["edges"]
            assert len(edges) == depth, f"lineage({leaf}): {len(edges)} edges, expected {depth}"
            # Walk up from the leaf: each edge's parent is the next edge's child, down to version 1.
            node = leaf
            for expected_depth, edge in zip(range(-1, -depth - 1, -1), edges[::-1], strict=True):
                assert edge["depth"] == expected_depth and edge["child_model_id"] == node, edge
                node = edge["parent_model_id"]
            assert node == f"{entry['name']}/1", f"the chain of {leaf} ends at {node}"
            down = self.hokusai.lineage(f"{entry['name']}/1", direction="downstream")["edges"]
            assert len(down) == depth and max(e["depth"] for e in down) == depth, "downstream from the root"
            said.append(f"{depth}")
        deep = self.summary["lineage"][str(self.summary["parameters"]["max_depth"])]["model_id"]
        name, leaf = deep.split("/")
        tags = self.registry.get_model_version(name, leaf).tags
        edge = self.hokusai.edge_of(deep)
        assert edge["attestation_id"] == tags[T.ATTESTATION_ID], "edge and version name other attestations"
        assert str(edge["delta_one_bps"]) == tags[T.DELTA_ONE_BPS], "edge and version disagree on DeltaOne"
        return "chains of depth " + ", ".join(said) + " walked up and down"

    def check_contributor_impact(self) -> str:
        heaviest = self.summary["heaviest_contributor"]
        impact = self.hokusai.contributor_impact(heaviest["address"], max_results=1000)
        assert impact["total_models_improved"] == heaviest["contributions"], (
            f"{impact['total_models_improved']} models improved, expected {heaviest['contributions']}"
        )
        assert impact["total_attributed_bps"] == heaviest["attributed_bps"], (
            f"{impact['total_attributed_bps']} bps, expected {heaviest['attributed_bps']}"
        )
        assert impact["projects"] == heaviest["projects"], "per-project totals differ"
        seen, last = len(impact["contributions"]), None
        keys = [(c["created_at"], c["model_id"]) for c in impact["contributions"]]
        assert keys == sorted(keys, key=lambda k: k[0]), "first page not in time order"
        while impact["next"]:
            last = impact["next"]
            impact = self.hokusai.contributor_impact(heaviest["address"], max_results=1000, after=last)
            assert all(c["created_at"] >= last[0] for c in impact["contributions"]), "page goes back in time"
            seen += len(impact["contributions"])
        assert seen == heaviest["contributions"], f"pages hold {seen} contributions"
        return (
            f"{heaviest['address']}: {seen} contributions, {heaviest['attributed_bps']} bps, pages complete"
        )

    def check_attestation(self) -> str:
        deep = self.summary["lineage"][str(self.summary["parameters"]["max_depth"])]["model_id"]
        edge = self.hokusai.edge_of(deep)
        document = self.hokusai.get_attestation(edge["attestation_id"])
        assert document is not None, f"attestation {edge['attestation_id']} missing"
        assert document.get("synthetic") is True, "a seeded document must say it is synthetic"
        payload = base64.b64decode(document["dsse"]["payload"])
        assert hashlib.sha256(payload).hexdigest() == document["id"], "id is not the payload's sha256"
        predicate = json.loads(payload)["predicate"]
        assert predicate["delta_one_bps"] == edge["delta_one_bps"], "predicate and edge disagree"
        assert sum(c["attributed_bps"] for c in predicate["contributors"]) == edge["delta_one_bps"]
        verdict = verify_document(document)
        assert not verdict.valid, "a synthetic (unsigned) document verified"
        # Issue the same improvement for real with a throwaway key: only the signature may differ.
        signed = _reissue(predicate)
        assert signed["id"] == document["id"], "the real issuing code gives another payload"
        assert verify_document(signed).valid
        return (
            f"{document['id'][:12]}...: same payload and id as a really signed one "
            f"({len(json.dumps(signed))} vs {len(json.dumps(document))} bytes), unsigned as declared "
            f"({verdict.failed_check} fails)"
        )

    # -- invariants over everything -------------------------------------------------------------

    def check_invariants(self) -> str:
        rows = self.sql(
            "SELECT (SELECT count(*) FROM hokusai_lineage_edges),"
            " (SELECT count(*) FROM hokusai_attestations),"
            " (SELECT count(*) FROM model_version_tags WHERE key = :baseline),"
            " (SELECT count(*) FROM hokusai_lineage_edges e LEFT JOIN hokusai_attestations a"
            "   ON a.id = e.attestation_id WHERE a.id IS NULL),"
            " (SELECT count(*) FROM model_versions v LEFT JOIN runs r ON r.run_uuid = v.run_id"
            "   WHERE r.run_uuid IS NULL)",
            baseline=T.BASELINE,
        )[0]
        edges, attestations, baselines, orphan_edges, orphan_versions = rows
        assert edges == attestations == baselines, f"{edges} edges, {attestations} attestations, {baselines}"
        assert orphan_edges == 0 and orphan_versions == 0, f"{orphan_edges} edges, {orphan_versions} versions"
        mismatched = self.sql(
            "SELECT count(*) FROM hokusai_lineage_edges e JOIN model_version_tags t"
            " ON t.key = :key AND t.name || '/' || t.version = e.child_model_id"
            " WHERE t.value <> e.attestation_id",
            key=T.ATTESTATION_ID,
        )[0][0]
        assert mismatched == 0, f"{mismatched} versions name another attestation than their edge"
        unsplit = self.sql(
            "SELECT count(*) FROM hokusai_lineage_edges e JOIN"
            " (SELECT model_id, sum(attributed_bps) AS s FROM hokusai_contributions GROUP BY model_id) c"
            " ON c.model_id = e.child_model_id WHERE c.s <> e.delta_one_bps"
        )[0][0]
        assert unsplit == 0, f"{unsplit} improvements whose contributors do not share exactly the DeltaOne"
        untotalled = self.sql(
            "SELECT count(*) FROM (SELECT address, project, count(*) AS n, sum(attributed_bps) AS s,"
            "   min(created_at) AS f, max(created_at) AS l"
            "   FROM hokusai_contributions GROUP BY address, project) c"
            " FULL JOIN hokusai_contributor_totals t ON t.address = c.address AND t.project = c.project"
            " WHERE t.address IS NULL OR c.address IS NULL OR t.models_improved <> c.n"
            "   OR t.attributed_bps <> c.s OR t.first_contribution <> c.f OR t.last_contribution <> c.l"
        )[0][0]
        assert untotalled == 0, f"{untotalled} (contributor, project) totals disagree with the contributions"
        top = self.sql(
            "SELECT address, count(*) AS n FROM hokusai_contributions"
            " GROUP BY address ORDER BY n DESC LIMIT 2"
        )
        heaviest = self.summary["heaviest_contributor"]["address"]
        assert top[0][0] == heaviest and top[0][1] > top[1][1], f"heaviest is not {heaviest}: {top}"
        return f"{edges} edges = attestations = baseline tags; heaviest {top[0][1]} vs next {top[1][1]}"


def _reissue(predicate: dict) -> dict:
    from mlflow_hokusai_plugin.core.issuance import attest_improvement
    from mlflow_hokusai_plugin.runtime.signer import Signer

    signer = Signer.from_private_key(secrets.token_hex(32))
    return attest_improvement(
        signer,
        model_id=predicate["model"]["id"],
        baseline_model_id=predicate["baseline"]["model_id"],
        benchmark_metric=predicate["benchmark"]["metric"],
        contributors=[
            {"address": c["address"], "weight_bps": c["weight_bps"]} for c in predicate["contributors"]
        ],
        baseline_metrics=predicate["metrics"]["baseline"],
        candidate_metrics=predicate["metrics"]["candidate"],
        baseline_run_id=predicate["baseline"]["run_id"],
        run_id=predicate["model"]["run_id"],
        dataset_digest=predicate["benchmark"]["dataset_digest"],
        model_digest=predicate["model"]["digest"],
        baseline_digest=predicate["baseline"]["digest"],
        created_at=predicate["created_at"],
        plugin_version=predicate["plugin_version"],
        project=predicate["model"]["project"],
        model_type=predicate["model"]["model_type"],
    ).document


CHECKS = (
    "counts",
    "get_model_version",
    "search_model_versions",
    "get_run",
    "lineage",
    "contributor_impact",
    "attestation",
    "invariants",
)


def check(url: str, summary: dict) -> int:
    """Run every check; print each verdict; 0 when all pass."""
    checks = Checks(database_url(url), summary)
    failed = 0
    try:
        for name in CHECKS:
            start = time.perf_counter()
            try:
                said = getattr(checks, f"check_{name}")()
            except Exception as exc:  # noqa: BLE001 - report every failed check, not only the first
                failed += 1
                print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
                continue
            print(f"ok   {name} ({(time.perf_counter() - start) * 1000:.0f} ms): {said}", flush=True)
    finally:
        checks.close()
    print(f"{len(CHECKS) - failed}/{len(CHECKS)} checks passed")
    return 1 if failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", required=True)
    p.add_argument("--summary", type=Path, required=True, help="the JSON summary benchmarks/seed.py wrote")
    args = p.parse_args(argv)
    return check(args.database_url, json.loads(args.summary.read_text()))


if __name__ == "__main__":
    sys.exit(main())
