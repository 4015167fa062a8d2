"""When an improvement found by its key is taken for this evaluation's (``_attested_as``): only on
the facts the server attested, with a signature by the attester the server recorded.

A stand-in for the server's app client serves the document; the documents are really signed.
"""

import json
from types import SimpleNamespace

import pytest

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.attestation import (
    attestation_document,
    build_statement,
    improvement_predicate,
    sign_envelope,
)
from mlflow_hokusai_plugin.core.contributors import parse_contributors
from mlflow_hokusai_plugin.pipeline.registration import _attested_as
from mlflow_hokusai_plugin.runtime.signer import Signer

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BOB = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
SERVER = Signer.from_private_key("0x" + "5e" * 32)
OTHER = Signer.from_private_key("0x" + "6f" * 32)
CONTRIBUTORS = [{"address": ALICE, "samples": 3}, {"address": BOB, "samples": 1}]
FACTS = {"baseline_id": "churn/1", "benchmark_digest": "bd" * 32, "benchmark_metric": "accuracy"}


def document(signer=SERVER, contributors=CONTRIBUTORS, **changes):
    weights = [{**c, "attributed_bps": 0} for c in parse_contributors(contributors)]
    predicate = improvement_predicate(
        model_id="churn/2",
        model_digest="aa" * 32,
        baseline_model_id=changes.get("baseline_id", "churn/1"),
        baseline_digest="bb" * 32,
        baseline_run_id="r1",
        run_id=changes.get("run_id", "r2"),
        benchmark_metric=changes.get("benchmark_metric", "accuracy"),
        dataset_digest=changes.get("benchmark_digest", "bd" * 32),
        baseline_metrics={"accuracy": 0.9},
        candidate_metrics={"accuracy": 0.95},
        metric_deltas={},
        delta_one_bps=500,
        contributors=weights,
        pipeline_run_id=None,
        plugin_version="0",
        created_at="2026-01-01T00:00:00.000Z",
    )
    envelope = sign_envelope(build_statement("models:/churn/2", "aa" * 32, predicate), signer)
    return attestation_document(
        envelope=envelope,
        model_id="churn/2",
        baseline_model_id="churn/1",
        attester=signer.address,
        created_at="2026-01-01T00:00:00.000Z",
    )


def version(doc, **tags):
    base = {
        T.BASELINE: "churn/1",
        T.ATTESTATION_STATUS: T.STATUS_SIGNED,
        T.ATTESTATION_ID: doc["id"],
        T.ATTESTER: SERVER.address,
        T.CONTRIBUTORS: json.dumps(CONTRIBUTORS),
    }
    return SimpleNamespace(name="churn", version="2", run_id="r2", tags={**base, **tags})


def server(*docs):
    served = {d["id"]: d for d in docs}
    return SimpleNamespace(get_attestation=lambda attestation_id: served[attestation_id])


def attested(doc, contributors=CONTRIBUTORS, served=None, facts=FACTS, **tags):
    found = version(doc, **tags)
    return _attested_as(server(served or doc), found, contributors=contributors, **facts)


def test_the_same_facts_attested_by_the_servers_attester_are_reused():
    assert attested(document())
    # Contributors as a set, addresses in any case.
    assert attested(document(), contributors=[{"address": BOB.lower(), "samples": 1}, CONTRIBUTORS[0]])


@pytest.mark.parametrize(
    "doc",
    [
        document(signer=OTHER),
        document(contributors=[{"address": BOB, "samples": 1}]),
        document(contributors=[{"address": ALICE, "samples": 1}, {"address": BOB, "samples": 3}]),
        document(baseline_id="churn/3"),
        document(benchmark_metric="f1"),
        document(benchmark_digest="cc" * 32),
        document(run_id="r9"),
    ],
    ids=["other-signer", "other-contributor", "other-shares", "baseline", "metric", "digest", "run"],
)
def test_other_attested_facts_or_another_signer_are_not_reused(doc):
    assert not attested(doc)


def test_what_clients_could_write_or_a_pending_attestation_is_not_trusted():
    doc = document()
    assert not attested(doc, **{T.ATTESTATION_STATUS: T.STATUS_PENDING})
    assert not attested(doc, **{T.BASELINE: "churn/3"})
    assert not attested(doc, **{T.ATTESTER: OTHER.address})
    # The same weights (a single contributor), but other samples than this evaluation's.
    alone = [{"address": ALICE, "samples": 4}]
    assert not attested(
        document(contributors=alone),
        contributors=[{"address": ALICE, "samples": 9}],
        **{T.CONTRIBUTORS: json.dumps(alone)},
    )
    # A document served under the version's id must be the one the id names.
    other = document(contributors=[{"address": BOB, "samples": 1}])
    assert not attested(doc, served={**other, "id": doc["id"]})
    tampered = json.loads(json.dumps(doc))
    tampered["dsse"]["signatures"][0]["sig"] = tampered["dsse"]["signatures"][0]["sig"][:-4] + "AAAA"
    assert not attested(doc, served=tampered)
