"""The --disable-services numbers and documents: computed here, signed only with a configured key."""

from eth_account import Account

from mlflow_hokusai_plugin.core.attestation import verify_document
from mlflow_hokusai_plugin.pipeline.offline import UNSIGNED, offline_improvement
from mlflow_hokusai_plugin.pipeline.output import deltaone_output

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BOB = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
KEY = "0x" + "4c" * 32


def improve(environ):
    return offline_improvement(
        baseline_metrics={"accuracy": 0.75, "f1_score": 0.70},
        candidate_metrics={"accuracy": 0.82, "f1_score": 0.74},
        benchmark_metric="accuracy",
        contributors=[{"address": ALICE.lower(), "samples": 300}, {"address": BOB, "samples": 100}],
        data_hash="ab" * 32,
        dataset_digest="cd" * 32,
        model_type="classification",
        project="churn",
        pipeline_run_id="metaflow:HokusaiEvaluationFlow/7",
        created_at="2026-11-27T10:00:00.000Z",
        environ=environ,
    )


def test_without_a_key_the_document_says_unsigned_and_carries_the_statement():
    improvement, attributed, document = improve({})
    assert improvement["delta_one_bps"] == 700
    assert attributed == [
        {"address": ALICE, "samples": 300, "weight_bps": 7500, "attributed_bps": 525},
        {"address": BOB, "samples": 100, "weight_bps": 2500, "attributed_bps": 175},
    ]
    assert document["status"] == UNSIGNED and "HOKUSAI_ATTESTER_KEY" in document["reason"]
    statement = document["statement"]
    assert statement["subject"] == [
        {"name": f"hokusai-contribution:{'ab' * 32}", "digest": {"sha256": "ab" * 32}}
    ]
    assert statement["predicate"]["delta_one_bps"] == 700
    assert statement["predicate"]["pipeline_run_id"] == "metaflow:HokusaiEvaluationFlow/7"
    # Nobody can take it for a signed document.
    assert not verify_document(document).valid


def test_with_a_configured_key_the_pipeline_host_signs():
    _, _, document = improve({"HOKUSAI_ATTESTER_KEY": KEY})
    verdict = verify_document(document, attesters=[Account.from_key(KEY).address])
    assert verdict.valid and document["model_id"] == f"contribution:{'ab' * 32}"


def test_the_deltaone_output_document_has_the_earlier_shape():
    improvement, attributed, document = improve({})
    manifest = {"data_hash": "ab" * 32, "row_count": 400}
    output = deltaone_output(
        improvement=improvement,
        baseline_model={"model_id": None, "model_type": "classification", "metrics": {"accuracy": 0.75}},
        new_model={"model_id": None, "model_type": "classification", "metrics": {"accuracy": 0.82}},
        contributors=attributed,
        manifest=manifest,
        total_samples=1400,
        evaluation={"benchmark_dataset_digest": "cd" * 32},
        pipeline={"flow_name": "HokusaiEvaluationFlow"},
        attestation=document,
    )
    computation = output["delta_computation"]
    assert computation["delta_one_score"] == 7.0 and computation["metrics_included"] == [
        "accuracy",
        "f1_score",
    ]
    assert (
        computation["improved_metrics"] == ["accuracy", "f1_score"] and computation["degraded_metrics"] == []
    )
    assert output["contributor_attribution"]["contributor_weights"] == {ALICE: 7500, BOB: 2500}
    assert output["contributor_attribution"]["contributed_samples"] == 400
    assert output["baseline_model"] == {
        "model_id": None,
        "model_type": "classification",
        "metrics": {"accuracy": 0.75},
        "mlflow_run_id": None,
    }
    assert output["attestation"] == {"status": UNSIGNED, "id": None, "attester": None}
