"""Input that passes validation but cannot be stored, on a real 2-worker server on PostgreSQL.

A value that overflows its column (a sample count above 2**63 - 1, a 251-character metric name, a
metric whose score in basis points does not fit a BIGINT, an infinite metric MLflow stored as the
largest float) used to pass validation and fail in the database after MLflow had written the
version: 200, the version ``pending`` forever with some records written, and ``hokusai reconcile``
failing on every run. A summary longer than MLflow's 5000-character description column did the
same to 100 contributors, the documented maximum. An infinite metric was a 500 HTML page.

Each attack goes over raw HTTP (MLflow's own route and the Hokusai REST route) and checks the
answer: 400, MLflow's JSON error shape, INVALID_PARAMETER_VALUE, the message starting with the
field; then that nothing was written (the plugin tables and the audit head, the registry's
versions, read with plain SQL) and that no version is left pending.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import mlflow
import pytest
import requests
from eth_account import Account
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersionTag
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as MlflowRegistryStore

from mlflow_hokusai_plugin.core import summary
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import document_predicate
from mlflow_hokusai_plugin.core.storage_bounds import MLFLOW_DESCRIPTION_LENGTH, SAMPLES_MAX
from tests.integration.test_cli import hokusai as hokusai_cli
from tests.integration.test_server_plugin import (
    ALICE,
    BOB,
    _dispose_engines,  # noqa: F401 - the engines sql() opens are disposed with this module
    baseline_tags,
    create_version,
    fetch_attestation,
    improvement_tags,
    in_process_store,  # noqa: F401 - a fixture
    log_candidate,
    mlflow_env,
    plugin_counts,
    register_baseline,
    rows_of,
    scalar,
    server_side_env,  # noqa: F401 - a fixture (of in_process_store)
    sql,
    status_in_db,
    unique,
)

HOKUSAI = "/api/2.0/hokusai"
AJAX = "/ajax-api/2.0/hokusai"
GOOD = {"accuracy": 0.81, "f1_score": 0.71}
# JSON numbers no column, document or signature can carry: literals JSON does not have, and
# numbers beyond the float range (Python reads 1e999 as infinity).
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]


# -- helpers --------------------------------------------------------------------------------------


def post(server, path: str, body) -> requests.Response:
    """One POST, ``body`` a dict (sent as JSON) or the exact JSON text."""
    data = body if isinstance(body, str) else json.dumps(body)
    return requests.post(
        server.url + path, data=data, headers={"Content-Type": "application/json"}, timeout=120
    )


def create_raw(server, name: str, candidate, tags: dict, description: str | None = None):
    """MLflow's create-model-version route, as MlflowClient.create_model_version calls it."""
    body = {
        "name": name,
        "source": candidate.uri,
        "run_id": candidate.run_id,
        "model_id": candidate.model_id,
        "tags": [{"key": k, "value": v} for k, v in tags.items()],
    }
    if description is not None:
        body["description"] = description
    return post(server, "/api/2.0/mlflow/model-versions/create", body)


def set_tag_raw(server, name: str, version, key: str, value: str):
    body = {"name": name, "version": str(version), "key": key, "value": value}
    return post(server, "/api/2.0/mlflow/model-versions/set-tag", body)


def register_body(name: str, candidate, baseline: str | None, **extra) -> dict:
    body = {
        "name": name,
        "model_uri": f"models:/{candidate.model_id}",
        "project": "churn",
        "model_type": "classification",
        "baseline": baseline,
        "benchmark_metric": "accuracy",
        **extra,
    }
    if baseline is not None:
        body.setdefault("contributors", [{"address": ALICE, "weight_bps": 10000}])
    return body


def refused(response: requests.Response, field: str, *mentions: str) -> str:
    """400 in MLflow's JSON shape, INVALID_PARAMETER_VALUE, the message starting with ``field``."""
    assert response.status_code == 400, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    body = response.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE", body
    assert body["message"].startswith(f"{field}:"), (field, body["message"])
    for mention in mentions:
        assert mention in body["message"], (mention, body["message"])
    return body["message"]


def pending(store_uri: str) -> int:
    return scalar(
        store_uri,
        "SELECT COUNT(*) FROM model_version_tags WHERE key = :k AND value = :v",
        k=T.ATTESTATION_STATUS,
        v=T.STATUS_PENDING,
    )


def written(store_uri: str) -> dict:
    """What a refused registration must leave as it was: plugin tables, audit head, registry rows."""
    return {
        **plugin_counts(store_uri),
        "totals": scalar(store_uri, "SELECT COUNT(*) FROM hokusai_contributor_totals"),
        "registered_models": scalar(store_uri, "SELECT COUNT(*) FROM registered_models"),
        "versions": scalar(store_uri, "SELECT COUNT(*) FROM model_versions"),
        "version_tags": scalar(store_uri, "SELECT COUNT(*) FROM model_version_tags"),
        "api_keys": scalar(store_uri, "SELECT COUNT(*) FROM hokusai_api_keys"),
    }


def addresses(count: int) -> list[str]:
    """Distinct, EIP-55 checksummed (mixed-case, full 42-character) addresses."""
    return [Account.create().address for _ in range(count)]


# -- the server -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(hokusai_servers):
    """A 2-worker server on PostgreSQL of this module's own, with a baseline ``name/1``."""
    server = hokusai_servers.start("postgresql", workers=2)
    with mlflow_env():
        mlflow.set_tracking_uri(server.url)
        mlflow.set_registry_uri(server.url)
        mlflow.set_experiment(unique("unstorable"))
        name = unique("bounds")
        baseline = register_baseline(name)
        client = MlflowClient(server.url, server.url)
        yield SimpleNamespace(
            server=server, uri=server.store_uri, client=client, name=name, baseline=baseline
        )


# -- MLflow's own route: create a version with tags -------------------------------------------------


def test_tags_the_store_cannot_hold_are_400s_naming_the_tag_with_nothing_written(world):
    good = improvement_tags(world.baseline)
    measured = log_candidate(GOOD)
    entry = f'"address": "{ALICE}"'
    cases = [
        (
            {T.CONTRIBUTORS: json.dumps([{"address": ALICE, "samples": 2**63}])},
            measured,
            f"{T.CONTRIBUTORS}[0].samples",
            ["9223372036854775807"],
        ),
        ({T.CONTRIBUTORS: f'[{{{entry}, "samples": 1e999}}]'}, measured, f"{T.CONTRIBUTORS}[0].samples", []),
        (
            {T.CONTRIBUTORS: f'[{{{entry}, "weight_bps": -1e999}}]'},
            measured,
            f"{T.CONTRIBUTORS}[0].weight_bps",
            [],
        ),
        ({T.CONTRIBUTORS: f'[{{{entry}, "samples": Infinity}}]'}, measured, T.CONTRIBUTORS, ["Infinity"]),
        (
            {T.CONTRIBUTORS: json.dumps([{"address": ALICE, "weight_bps": 2**31}])},
            measured,
            f"{T.CONTRIBUTORS}[0].weight_bps",
            [],
        ),
        ({T.BENCHMARK_METRIC: "m" * 251}, measured, T.BENCHMARK_METRIC, ["251 characters"]),
        ({T.PIPELINE_RUN_ID: "p" * 251}, measured, T.PIPELINE_RUN_ID, ["251 characters"]),
        ({T.PROJECT: "p" * 65}, measured, T.PROJECT, []),
        ({T.BASELINE: f"{world.name}/{2**31}"}, measured, T.BASELINE, []),
        ({T.BASELINE: f"{'n' * 600}/1"}, measured, T.BASELINE, []),
        # Scores in basis points beyond a BIGINT, either way.
        ({}, log_candidate({"accuracy": 1e15, "f1_score": 0.7}), "new_metrics.accuracy", ["64-bit"]),
        ({}, log_candidate({"accuracy": -1e15, "f1_score": 0.7}), "new_metrics.accuracy", ["64-bit"]),
    ]
    before = written(world.uri)
    for changes, candidate, field, mentions in cases:
        refused(create_raw(world.server, world.name, candidate, {**good, **changes}), field, *mentions)
    assert written(world.uri) == before
    assert pending(world.uri) == 0

    # The largest values that fit are accepted, and signed.
    edge = json.dumps([{"address": ALICE, "samples": SAMPLES_MAX}])
    answer = create_raw(
        world.server, world.name, measured, {**good, T.CONTRIBUTORS: edge, T.PIPELINE_RUN_ID: "p" * 250}
    )
    assert answer.status_code == 200, answer.text[:500]
    version = answer.json()["model_version"]
    assert {t["key"]: t["value"] for t in version["tags"]}[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
    samples = sql(
        world.uri,
        "SELECT samples FROM hokusai_contributions WHERE model_id = :m",
        m=f"{world.name}/{version['version']}",
    )
    assert samples == [(SAMPLES_MAX,)]


def test_infinite_metrics_are_400_json_on_both_registration_paths(world):
    """MLflow stores +/-inf as +/-1.7976931348623157e308: its score in basis points overflowed
    float division (a 500 HTML page) or the BIGINT column (a version pending forever)."""
    infinite_baseline = register_baseline(unique("infbase"), {"accuracy": math.inf, "f1_score": 0.7})
    cases = [
        (
            world.baseline,
            {"accuracy": math.inf, "f1_score": 0.7},
            T.BENCHMARK_METRIC,
            "candidate",
            "infinity",
        ),
        (
            world.baseline,
            {"accuracy": -math.inf, "f1_score": 0.7},
            T.BENCHMARK_METRIC,
            "candidate",
            "-infinity",
        ),
        (world.baseline, {"accuracy": math.nan, "f1_score": 0.7}, "new_metrics.accuracy", "candidate", "nan"),
        (
            world.baseline,
            {"accuracy": 0.8, "f1_score": math.inf},
            "metrics.f1_score",
            "candidate",
            "infinity",
        ),
        (infinite_baseline, {"accuracy": 0.8, "f1_score": 0.7}, T.BENCHMARK_METRIC, "baseline", "infinity"),
    ]
    before = written(world.uri)
    for baseline, metrics, field, side, mention in cases:
        candidate = log_candidate(metrics)
        baseline_name = baseline.split("/")[0]
        refused(
            create_raw(world.server, baseline_name, candidate, improvement_tags(baseline)),
            field,
            side,
            mention,
        )
        name = unique("inf-rest")
        refused(
            post(world.server, f"{HOKUSAI}/models/register", register_body(name, candidate, baseline)), field
        )
        assert scalar(world.uri, "SELECT COUNT(*) FROM registered_models WHERE name = :n", n=name) == 0
    assert written(world.uri) == before
    assert pending(world.uri) == 0


# -- the Hokusai REST route -----------------------------------------------------------------------


def test_the_rest_route_refuses_what_the_store_cannot_hold_with_nothing_written(world):
    candidate = log_candidate(GOOD)
    cases = [
        ({"contributors": [{"address": ALICE, "samples": 2**63}]}, "contributors[0].samples"),
        ({"benchmark_metric": "m" * 251}, "benchmark_metric"),
        ({"pipeline_run_id": "p" * 251}, "pipeline_run_id"),
        ({"description": "d" * (MLFLOW_DESCRIPTION_LENGTH + 1)}, "description"),
        ({"name": "n" * 257}, "name"),
    ]
    before = written(world.uri)
    for changes, field in cases:
        name = unique("rest")
        body = {**register_body(name, candidate, world.baseline), **changes}
        refused(post(world.server, f"{HOKUSAI}/models/register", body), field)
    huge = log_candidate({"accuracy": 1e15, "f1_score": 0.7})
    refused(
        post(world.server, f"{HOKUSAI}/models/register", register_body(unique("rest"), huge, world.baseline)),
        "new_metrics.accuracy",
        "64-bit",
    )
    assert written(world.uri) == before
    assert pending(world.uri) == 0


@pytest.mark.parametrize("literal", NON_FINITE)
def test_bodies_with_nan_infinity_or_1e999_are_400s_naming_the_field_on_every_hokusai_route(world, literal):
    address = f'"address": "{ALICE}"'
    register = (
        f'{{"name": "{unique("nan")}", "model_uri": "models:/m-0123", "project": "churn", '
        f'"model_type": "classification", "baseline": "{world.baseline}", "benchmark_metric": "accuracy", '
        f'"contributors": [{{{address}, "samples": {literal}}}]}}'
    )
    bodies = [
        ("/models/register", register, "contributors[0].samples"),
        (
            "/attestations/verify",
            f'{{"document": {{"dsse": {{"payload": {literal}}}}}}}',
            "document.dsse.payload",
        ),
        ("/attestations/verify", f'{{"document": {{}}, "threshold": {literal}}}', "threshold"),
        ("/keys", f'{{"name": "ci", "role": "read", "project": {literal}}}', "project"),
        ("/keys/1/revoke", f'{{"reason": [1, {literal}]}}', "reason[1]"),
    ]
    before = written(world.uri)
    for prefix in (HOKUSAI, AJAX):
        for path, body, field in bodies:
            refused(post(world.server, prefix + path, body), field, "finite")
    # With an Idempotency-Key too: refused before the key is claimed, so it stays free.
    keyed = requests.post(
        world.server.url + HOKUSAI + "/models/register",
        data=register,
        headers={"Content-Type": "application/json", "Idempotency-Key": unique("key")},
        timeout=60,
    )
    refused(keyed, "contributors[0].samples")
    assert written(world.uri) == before


# -- tagging an existing version ------------------------------------------------------------------


def test_tagging_an_existing_version_with_values_the_store_cannot_hold_leaves_its_tags_unchanged(world):
    name, server = world.name, world.server
    tags = improvement_tags(world.baseline)

    def untagged(metrics: dict) -> str:
        version = create_version(world.client, name, log_candidate(metrics)).version
        assert T.ATTESTATION_STATUS not in world.client.get_model_version(name, version).tags
        return version

    def tags_of(version) -> dict:
        return dict(
            sql(
                world.uri,
                "SELECT key, value FROM model_version_tags WHERE name = :n AND version = :v",
                n=name,
                v=int(version),
            )
        )

    def all_but(version, last: str) -> dict:
        for key in (T.BASELINE, T.PROJECT, T.MODEL_TYPE, T.BENCHMARK_METRIC, T.CONTRIBUTORS):
            if key != last:
                assert set_tag_raw(server, name, version, key, tags[key]).status_code == 200
        return tags_of(version)

    before = written(world.uri)
    # The last tag is the one that cannot be stored.
    version = untagged(GOOD)
    stored = all_but(version, T.CONTRIBUTORS)
    for value, field in [
        (json.dumps([{"address": ALICE, "samples": 2**63}]), f"{T.CONTRIBUTORS}[0].samples"),
        (f'[{{"address": "{ALICE}", "samples": 1e999}}]', f"{T.CONTRIBUTORS}[0].samples"),
    ]:
        refused(set_tag_raw(server, name, version, T.CONTRIBUTORS, value), field)
        assert tags_of(version) == stored
    version_b = untagged(GOOD)
    stored_b = all_but(version_b, T.BENCHMARK_METRIC)
    refused(set_tag_raw(server, name, version_b, T.BENCHMARK_METRIC, "m" * 251), T.BENCHMARK_METRIC)
    assert tags_of(version_b) == stored_b
    # An infinite metric on the version's run: refused when the last tag arrives.
    version_c = untagged({"accuracy": math.inf, "f1_score": 0.7})
    stored_c = all_but(version_c, T.CONTRIBUTORS)
    refused(set_tag_raw(server, name, version_c, T.CONTRIBUTORS, tags[T.CONTRIBUTORS]), T.BENCHMARK_METRIC)
    assert tags_of(version_c) == stored_c

    for v in (version, version_b, version_c):
        assert rows_of(world.uri, f"{name}/{v}") == (0, 0)
        assert status_in_db(world.uri, name, v) is None
    after = written(world.uri)
    # Only the three plain versions and their accepted tags were added.
    assert {
        k: after[k] for k in ("hokusai_lineage_edges", "hokusai_attestations", "hokusai_contributions")
    } == {k: before[k] for k in ("hokusai_lineage_edges", "hokusai_attestations", "hokusai_contributions")}
    assert after["versions"] == before["versions"] + 3
    assert pending(world.uri) == 0

    # The version is still usable: the right last tag attests it.
    assert set_tag_raw(server, name, version, T.CONTRIBUTORS, tags[T.CONTRIBUTORS]).status_code == 200
    assert status_in_db(world.uri, name, version) == T.STATUS_SIGNED


# -- 100 contributors and MLflow's description limit ------------------------------------------------


def _assert_signed_with_all(world, name: str, version, contributors: list[dict], own: str) -> dict:
    mv = world.client.get_model_version(name, str(version))
    assert mv.tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
    assert len(mv.description) <= MLFLOW_DESCRIPTION_LENGTH
    assert mv.description.startswith(own)
    document = fetch_attestation(world.server, mv.tags[T.ATTESTATION_ID])
    attested = document_predicate(document)["contributors"]
    assert [c["address"] for c in attested] == [c["address"] for c in contributors]
    assert sum(c["weight_bps"] for c in attested) == 10000
    stored = sql(
        world.uri,
        "SELECT address, samples FROM hokusai_contributions WHERE model_id = :m ORDER BY id",
        m=f"{name}/{version}",
    )
    assert stored == [(c["address"], c["samples"]) for c in contributors]
    verdict = post(world.server, f"{HOKUSAI}/attestations/verify", {"document": document}).json()
    assert verdict["valid"], verdict
    return {"description": mv.description, "document": document}


def test_one_hundred_contributors_with_samples_near_the_maximum_are_signed_within_mlflows_limit(world):
    contributors = [{"address": a, "samples": SAMPLES_MAX - i} for i, a in enumerate(addresses(100))]
    tag = json.dumps(contributors)

    # A plain client, with a description of its own: the summary is shortened below it.
    own = ("Trained on the March data, with every contributed row checked. " * 50).strip()
    assert 3000 < len(own) < 3300
    candidate = log_candidate({"accuracy": 0.83, "f1_score": 0.72})
    answer = create_raw(
        world.server, world.name, candidate, improvement_tags(world.baseline, contributors), own
    )
    assert answer.status_code == 200, answer.text[:500]
    version = answer.json()["model_version"]["version"]
    found = _assert_signed_with_all(world, world.name, version, contributors, own)
    attestation_id = found["document"]["id"]
    text = found["description"]
    assert "8 DeltaOne" in text and f"over {summary.version_link(world.baseline)}" in text
    assert "| accuracy |" in text
    shown = text.count("| `0x")
    assert 0 < shown < 100
    assert f"... and {100 - shown} more, see the attestation `{attestation_id}`" in text
    assert "shortened to fit MLflow's 5000-character description limit" in text
    assert json.loads(world.client.get_model_version(world.name, version).tags[T.CONTRIBUTORS]) == json.loads(
        tag
    )

    # The REST route, with a description at MLflow's limit: no room for a summary, still signed.
    for description in ("d" * MLFLOW_DESCRIPTION_LENGTH, "e" * 4700, None):
        name = unique("hundred")
        body = register_body(
            name,
            log_candidate({"accuracy": 0.84, "f1_score": 0.72}),
            world.baseline,
            contributors=contributors,
        )
        if description is not None:
            body["description"] = description
        answer = post(world.server, f"{HOKUSAI}/models/register", body)
        assert answer.status_code == 201, answer.text[:500]
        assert answer.json()["attestation_status"] == T.STATUS_SIGNED
        found = _assert_signed_with_all(world, name, "1", contributors, description or "")
        if description is None:
            assert (
                found["description"].startswith("**Hokusai improvement**")
                and summary.server_block(found["description"]) == found["description"]
                and "more, see the attestation" in found["description"]
            )
        elif len(description) == MLFLOW_DESCRIPTION_LENGTH:
            assert found["description"] == description
        else:
            assert "9 DeltaOne" in found["description"] and found["document"]["id"] in found["description"]
    assert pending(world.uri) == 0


def test_a_baseline_with_a_description_at_mlflows_limit_is_registered(world):
    """The baseline summary went below the user's 5000 characters: PostgreSQL refused the
    description and the route answered 400 BAD_REQUEST with the SQL statement in it."""
    for description, summary_kept in (("d" * MLFLOW_DESCRIPTION_LENGTH, False), ("d" * 4800, True)):
        name = unique("base5000")
        body = register_body(name, log_candidate({"accuracy": 0.7}), None, description=description)
        answer = post(world.server, f"{HOKUSAI}/models/register", body)
        assert answer.status_code == 201, answer.text[:500]
        stored = answer.json()["model_version"]["description"]
        assert len(stored) <= MLFLOW_DESCRIPTION_LENGTH and stored.startswith(description)
        assert ("Hokusai baseline" in stored) == summary_kept


# -- totals that would overflow -----------------------------------------------------------------------


def test_contributor_totals_that_would_overflow_are_refused_before_anything_is_written(world):
    """Each DeltaOne fits a BIGINT; two of them for one contributor do not fit its total."""
    project = unique("ovf")
    name = unique("totals")
    base = mlflow.register_model(
        log_candidate({"accuracy": -3e14, "f1_score": 0.5}).uri, name, tags=baseline_tags(project)
    )
    baseline = f"{name}/{base.version}"
    tags = improvement_tags(baseline, [{"address": BOB, "weight_bps": 10000}], project=project)
    first = create_raw(world.server, name, log_candidate({"accuracy": 3e14, "f1_score": 0.5}), tags)
    assert first.status_code == 200, first.text[:500]
    first_tags = {t["key"]: t["value"] for t in first.json()["model_version"]["tags"]}
    assert first_tags[T.ATTESTATION_STATUS] == T.STATUS_SIGNED
    assert first_tags[T.DELTA_ONE_BPS] == str(6 * 10**18)

    before = written(world.uri)
    second = create_raw(world.server, name, log_candidate({"accuracy": 3e14, "f1_score": 0.5}), tags)
    refused(second, f"{T.CONTRIBUTORS}[0]", BOB, "overflow")
    assert written(world.uri) == before
    assert pending(world.uri) == 0


# -- hokusai reconcile ----------------------------------------------------------------------------------


def test_reconcile_reports_a_version_it_can_never_sign_and_carries_on(
    world,
    hokusai_servers,
    s3,
    in_process_store,  # noqa: F811 - the fixtures imported above
):
    """Versions left pending by hand (what a crash, or the bug this file is about, left behind):
    one whose input the store cannot hold, one with nothing left to attest, and one with 100
    contributors below a long description (which used to overflow MLflow's description column)."""
    store = in_process_store(world.uri)
    name = world.name

    def pending_by_hand(tags: dict, description: str | None = None) -> str:
        candidate = log_candidate({"accuracy": 0.85, "f1_score": 0.74})
        version = MlflowRegistryStore.create_model_version(
            store,
            name,
            candidate.uri,
            candidate.run_id,
            tags=[ModelVersionTag(k, v) for k, v in tags.items()]
            + [ModelVersionTag(T.ATTESTATION_STATUS, T.STATUS_PENDING)],
            description=description,
            model_id=candidate.model_id,
        )
        return str(version.version)

    bad = pending_by_hand(improvement_tags(world.baseline, [{"address": ALICE, "samples": 2**63}]))
    empty = pending_by_hand(baseline_tags())  # no hokusai.baseline: nothing to attest
    contributors = [{"address": a, "samples": SAMPLES_MAX - i} for i, a in enumerate(addresses(100))]
    own = "x" * 4000
    long = pending_by_hand(improvement_tags(world.baseline, contributors), own)
    assert pending(world.uri) == 3

    env = {"HOKUSAI_ATTESTER_KEY": hokusai_servers.attester_key, **s3.env}
    args = (
        "reconcile",
        "--store-uri",
        world.uri,
        "--artifacts-destination",
        f"s3://{s3.bucket}/hokusai-artifacts",
    )
    first = hokusai_cli(*args, env=env, timeout=180)
    assert "Traceback" not in first.stderr, first.stderr[-3000:]
    lines = first.stdout.splitlines()
    assert (
        f"{name}/{bad}: failed ({T.CONTRIBUTORS}[0].samples: must be between 1 and {SAMPLES_MAX}"
        in first.stdout
    )
    assert any(line.startswith(f"{name}/{empty}: failed ({T.BASELINE}") for line in lines), first.stdout
    assert f"{name}/{long}: signed" in lines, first.stdout
    assert "3 pending registration(s) examined" in lines
    # A version it could not sign this pass: exit 1, as documented; the next pass has nothing left.
    assert first.returncode == 1, (first.stdout, first.stderr[-2000:])

    assert status_in_db(world.uri, name, bad) == T.STATUS_FAILED
    assert status_in_db(world.uri, name, empty) == T.STATUS_FAILED
    assert rows_of(world.uri, f"{name}/{bad}") == (0, 0)
    _assert_signed_with_all(world, name, long, contributors, own)
    assert pending(world.uri) == 0

    second = hokusai_cli(*args, env=env, timeout=180)
    assert second.returncode == 0, (second.stdout, second.stderr[-2000:])
    assert second.stdout.splitlines() == ["0 pending registration(s) examined"]


def test_a_baseline_spelled_with_a_leading_zero_is_refused(world):
    before = written(world.uri)
    name, version = world.baseline.split("/")
    candidate = log_candidate(GOOD)
    response = create_raw(world.server, world.name, candidate, improvement_tags(f"{name}/0{version}"))
    refused(response, T.BASELINE, "not a model id")
    assert written(world.uri) == before


def test_an_onchain_model_id_that_is_no_uint256_is_refused_on_the_model(world):
    path = "/api/2.0/mlflow/registered-models/set-tag"
    for value in ("1" * 5000, str(2**256), "-1", "0x10", "007", "1e3"):
        response = post(world.server, path, {"name": world.name, "key": T.ONCHAIN_MODEL_ID, "value": value})
        refused(response, T.ONCHAIN_MODEL_ID)
    tags = world.client.get_registered_model(world.name).tags
    assert T.ONCHAIN_MODEL_ID not in tags


def test_a_description_longer_than_mlflows_column_is_a_clean_400(world):
    name, version = world.baseline.split("/")
    too_long = "d" * (MLFLOW_DESCRIPTION_LENGTH + 1)
    before = world.client.get_model_version(name, version).description
    for path, body, method in (
        (
            "/api/2.0/mlflow/model-versions/update",
            {"name": name, "version": version, "description": too_long},
            "PATCH",
        ),
        ("/api/2.0/mlflow/registered-models/update", {"name": name, "description": too_long}, "PATCH"),
    ):
        response = requests.request(
            method,
            world.server.url + path,
            data=json.dumps(body),
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        message = refused(response, "description", str(MLFLOW_DESCRIPTION_LENGTH))
        assert "UPDATE" not in message and "SELECT" not in message
    assert world.client.get_model_version(name, version).description == before


def test_concurrent_writers_of_one_new_tag_all_succeed_without_sql_in_any_answer(world):
    import threading

    name, version = world.baseline.split("/")
    for round_number in range(5):
        key = f"race-{round_number}"
        barrier = threading.Barrier(8)
        answers = []

        def write(value: str, key=key, barrier=barrier, answers=answers) -> None:
            barrier.wait()
            answers.append(set_tag_raw(world.server, name, version, key, value))

        threads = [threading.Thread(target=write, args=(f"v{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [response.status_code for response in answers] == [200] * 8, [r.text[:300] for r in answers]
        assert world.client.get_model_version(name, version).tags[key] in {f"v{i}" for i in range(8)}
