"""The PRD services against a Hokusai server: the server attests, the client holds no key."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import mlflow
import pytest
from eth_account import Account

from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.services import HokusaiModelRegistry, PerformanceTracker
from tests.conftest import point_mlflow_at
from tests.integration.test_services import ALICE, BOB, log_candidate, verify_like_an_outsider


@pytest.fixture()
def server(hokusai_server, monkeypatch):
    # No key on the client: if the services tried to sign locally, they would fail.
    for name in ("HOKUSAI_ATTESTER_KEY", "HOKUSAI_ATTESTER_KEYSTORE"):
        monkeypatch.delenv(name, raising=False)
    for _url in point_mlflow_at(hokusai_server.url, monkeypatch):
        mlflow.set_experiment("services-on-hokusai")
        yield hokusai_server


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_registry_lets_the_server_attest(server, hokusai_servers):
    attester = Account.from_key(hokusai_servers.attester_key).address
    registry = HokusaiModelRegistry(server.url)
    name = f"srv-{uuid.uuid4().hex[:8]}"
    base = registry.register_baseline(
        log_candidate({"accuracy": 0.70}),
        "classification",
        {"project": "srv", "benchmark_metric": "accuracy"},
        name=name,
    )
    assert base["attestation_status"] == "not_applicable"
    improved = registry.register_improved_model(
        log_candidate({"accuracy": 0.74}),
        base["model_id"],
        contributors=[{"address": ALICE, "samples": 30}, {"address": BOB, "samples": 10}],
        metadata={"description": "trained with the March data"},
    )
    assert improved["delta_one_bps"] == 400
    assert improved["attester"] == attester
    assert verify_like_an_outsider(improved["attestation"]) == attester
    assert [c["attributed_bps"] for c in improved["contributors"]] == [300, 100]
    description = mlflow.MlflowClient().get_model_version(name, "2").description
    assert description.startswith("trained with the March data") and "4 DeltaOne" in description

    third = registry.register_improved_model(
        log_candidate({"accuracy": 0.75}), improved["model_id"], contributor=BOB
    )
    assert [node["model_id"] for node in registry.get_model_lineage(third["model_id"])] == [
        base["model_id"],
        improved["model_id"],
        third["model_id"],
    ]

    status, lineage = get_json(f"{server.url}/api/2.0/hokusai/models/{improved['model_id']}/lineage")
    assert status == 200
    assert lineage["root"] == base["model_id"]
    assert {(e["parent_model_id"], e["child_model_id"]) for e in lineage["edges"]} == {
        (base["model_id"], improved["model_id"]),
        (improved["model_id"], third["model_id"]),
    }
    downstream = next(e for e in lineage["edges"] if e["child_model_id"] == third["model_id"])
    assert downstream["cumulative_delta_one_bps"] == 500
    status, up_only = get_json(
        f"{server.url}/ajax-api/2.0/hokusai/models/{third['model_id']}/lineage?direction=upstream&max_depth=1"
    )
    assert status == 200 and [e["child_model_id"] for e in up_only["edges"]] == [third["model_id"]]

    impact = PerformanceTracker(server.url).get_contributor_impact(BOB.lower())
    mine = [c for c in impact["contributions"] if c["model_id"].startswith(name)]
    assert [c["attributed_bps"] for c in mine] == [100, 100]


def test_server_refusals_reach_the_services_as_validation_errors(server):
    registry = HokusaiModelRegistry(server.url)
    name = f"srv-bad-{uuid.uuid4().hex[:8]}"
    base = registry.register_baseline(
        log_candidate({"accuracy": 0.70}), "classification", {"benchmark_metric": "accuracy"}, name=name
    )
    with pytest.raises(ValidationError) as raised:
        registry.register_improved_model(
            log_candidate({"accuracy": 0.8}, "cd" * 32), base["model_id"], contributor=ALICE
        )
    assert raised.value.field == "hokusai.benchmark.dataset_digest"
    assert [v.version for v in mlflow.MlflowClient().search_model_versions(f"name = '{name}'")] == ["1"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/models/nope-model/7/lineage", 404, "RESOURCE_DOES_NOT_EXIST"),
        ("/models/x/1/lineage?direction=sideways", 400, "INVALID_PARAMETER_VALUE"),
        ("/models/x/1/lineage?max_depth=0", 400, "INVALID_PARAMETER_VALUE"),
        ("/contributors/0x1234/impact", 400, "INVALID_PARAMETER_VALUE"),
        (f"/contributors/{ALICE}/impact?page_token=%21%21", 400, "INVALID_PARAMETER_VALUE"),
        (f"/contributors/{ALICE}/impact?max_results=5000", 400, "INVALID_PARAMETER_VALUE"),
        ("/attestations/" + "0" * 64, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("/attestations", 400, "INVALID_PARAMETER_VALUE"),
    ],
)
def test_bad_requests_get_mlflow_shaped_errors(server, path, status, code):
    got_status, body = get_json(f"{server.url}/api/2.0/hokusai{path}")
    assert (got_status, body["error_code"]) == (status, code)
    assert body["message"]


def test_impact_pages_through_contributions(server):
    registry = HokusaiModelRegistry(server.url)
    address = Account.create().address
    name = f"srv-pages-{uuid.uuid4().hex[:8]}"
    previous = registry.register_baseline(
        log_candidate({"accuracy": 0.50}),
        "classification",
        {"project": "pages", "benchmark_metric": "accuracy"},
        name=name,
    )["model_id"]
    for step in range(1, 4):
        previous = registry.register_improved_model(
            log_candidate({"accuracy": 0.50 + step / 100}), previous, contributor=address.lower()
        )["model_id"]
    seen, token = [], ""
    while True:
        status, page = get_json(
            f"{server.url}/api/2.0/hokusai/contributors/{address.lower()}/impact?max_results=2&page_token={token}"
        )
        assert status == 200
        seen += [c["model_id"] for c in page["contributions"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == [f"{name}/{v}" for v in (2, 3, 4)]
    assert page["address"] == address
    assert page["total_attributed_bps"] == 300
    assert page["projects"] == {"pages": {"models_improved": 3, "attributed_bps": 300}}
