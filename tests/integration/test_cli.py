"""The installed ``hokusai`` console script, run as a user runs it (a subprocess)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from mlflow_hokusai_plugin.core.attestation import improvement_predicate
from mlflow_hokusai_plugin.core.issuance import issue_attestation
from mlflow_hokusai_plugin.signer import Signer

# The script installed beside this interpreter, even when its bin/ is not on PATH (make test).
HOKUSAI = shutil.which("hokusai", path=str(Path(sys.executable).parent))
ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def hokusai(*args: str, env: dict | None = None, input: str | None = None, timeout: float = 60):
    assert HOKUSAI, "the hokusai console script is not installed (pip install -e .)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOKUSAI_")}
    return subprocess.run(
        [HOKUSAI, *args],
        env={**clean, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_declared_entry_point_loads():
    declared = [
        ep for ep in entry_points(group="console_scripts") if ep.value.startswith("mlflow_hokusai_plugin")
    ]
    assert [ep.name for ep in declared] == ["hokusai"]
    for ep in declared:
        assert callable(ep.load())
    assert hokusai("--version").stdout.startswith("hokusai, version")


def test_signer_new_and_address(tmp_path):
    keystore = tmp_path / "attester.json"
    made = hokusai("signer", "new", "--keystore", str(keystore), env={"HOKUSAI_ATTESTER_PASSWORD": "pw"})
    assert made.returncode == 0, made.stderr
    address = made.stdout.strip()
    assert address.startswith("0x") and len(address) == 42
    assert oct(keystore.stat().st_mode)[-3:] == "600"

    shown = hokusai("signer", "address", "--keystore", str(keystore), env={"HOKUSAI_ATTESTER_PASSWORD": "pw"})
    assert shown.stdout.strip() == address
    via_env = hokusai(
        "signer",
        "address",
        env={"HOKUSAI_ATTESTER_KEYSTORE": str(keystore), "HOKUSAI_ATTESTER_PASSWORD": "pw"},
    )
    assert via_env.stdout.strip() == address

    again = hokusai("signer", "new", "--keystore", str(keystore), env={"HOKUSAI_ATTESTER_PASSWORD": "pw"})
    assert again.returncode == 2 and "exist" in again.stderr
    wrong = hokusai(
        "signer", "address", "--keystore", str(keystore), env={"HOKUSAI_ATTESTER_PASSWORD": "nope"}
    )
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr


def test_signer_address_never_prints_the_key():
    key = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
    shown = hokusai("signer", "address", env={"HOKUSAI_ATTESTER_KEY": key})
    assert shown.stdout.strip() == Signer.from_private_key(key).address
    broken = hokusai("signer", "address", env={"HOKUSAI_ATTESTER_KEY": key[:-2] + "zz"})
    assert broken.returncode == 2
    assert key[4:-2] not in broken.stdout + broken.stderr
    missing = hokusai("signer", "address")
    assert missing.returncode == 2 and "HOKUSAI_ATTESTER_KEY" in missing.stderr


@pytest.fixture()
def document():
    signer = Signer.generate()
    predicate = improvement_predicate(
        model_id="m/2",
        model_digest="aa" * 32,
        baseline_model_id="m/1",
        baseline_digest="bb" * 32,
        baseline_run_id="r1",
        run_id="r2",
        benchmark_metric="accuracy",
        dataset_digest="cc" * 32,
        baseline_metrics={"accuracy": 0.75},
        candidate_metrics={"accuracy": 0.82},
        metric_deltas={},
        delta_one_bps=700,
        contributors=[{"address": ALICE, "weight_bps": 10000, "attributed_bps": 700}],
        pipeline_run_id=None,
        plugin_version="test",
        created_at="2026-11-27T00:00:00Z",
    )
    doc = issue_attestation(
        signer,
        subject_name="models:/m/2",
        subject_digest="aa" * 32,
        predicate=predicate,
        model_id="m/2",
        baseline_model_id="m/1",
        created_at="2026-11-27T00:00:00Z",
    )
    return signer.address, doc


def test_attestation_verify(tmp_path, document):
    attester, doc = document
    path = tmp_path / "attestation.json"
    path.write_text(json.dumps(doc))

    ok = hokusai("attestation", "verify", str(path), "--attester", attester.lower())
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("VALID") and attester in ok.stdout

    as_json = json.loads(hokusai("attestation", "verify", str(path), "--attester", attester, "--json").stdout)
    assert as_json["valid"] is True and as_json["signers"] == [attester]

    envelope_only = tmp_path / "envelope.json"
    envelope_only.write_text(json.dumps(doc["dsse"]))
    assert hokusai("attestation", "verify", str(envelope_only), "--attester", attester).returncode == 0

    other = Signer.generate().address
    assert hokusai("attestation", "verify", str(path), "--attester", other).returncode == 1

    payload = bytearray(base64.b64decode(doc["dsse"]["payload"]))
    payload[payload.index(b"700")] = ord("9")
    tampered = {**doc, "dsse": {**doc["dsse"], "payload": base64.b64encode(bytes(payload)).decode()}}
    path.write_text(json.dumps(tampered))
    bad = hokusai("attestation", "verify", str(path), "--attester", attester)
    assert bad.returncode == 1 and bad.stdout.startswith("INVALID")

    path.write_text("{not json")
    assert hokusai("attestation", "verify", str(path)).returncode == 2
    needs_two = hokusai(
        "attestation", "verify", str(envelope_only), "--attester", attester, "--threshold", "2"
    )
    assert needs_two.returncode == 2 and "threshold" in needs_two.stderr


def test_demo_runs_twice_and_reuses_its_baseline(tmp_path):
    first = hokusai("demo", "--workdir", str(tmp_path / "demo"), timeout=300)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "Running HokusaiEvaluationFlow on Metaflow" in first.stdout
    assert "Baseline hokusai-demo-classifier/1 registered" in first.stdout
    assert "Verification with the attester address alone: VALID" in first.stdout
    assert "DeltaOne on accuracy" in first.stdout
    assert "/#/models/hokusai-demo-classifier/versions/2" in first.stdout

    second = hokusai("demo", "--workdir", str(tmp_path / "demo"), timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Baseline hokusai-demo-classifier/1 reused" in second.stdout
    assert "hokusai-demo-classifier/1  ->  hokusai-demo-classifier/3" in second.stdout


def test_every_plugin_entry_point_loads_and_mlflow_registered_the_store_schemes():
    groups = (
        "mlflow.tracking_store",
        "mlflow.model_registry_store",
        "mlflow.app",
        "mlflow.app.client",
        "mlflow.run_context_provider",
    )
    ours = [
        ep
        for group in groups
        for ep in entry_points(group=group)
        if ep.value.startswith("mlflow_hokusai_plugin")
    ]
    assert {(ep.group, ep.name) for ep in ours} >= {
        ("mlflow.tracking_store", "hokusai+postgresql"),
        ("mlflow.tracking_store", "hokusai+sqlite"),
        ("mlflow.model_registry_store", "hokusai+postgresql"),
        ("mlflow.model_registry_store", "hokusai+sqlite"),
        ("mlflow.app", "hokusai"),
    }
    for ep in ours:
        assert callable(ep.load()), ep
    # MLflow loads them itself without a warning-and-vanish (the trap of a failing import).
    from mlflow.tracking._model_registry.utils import _get_store_registry
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    for registry in (_tracking_store_registry, _get_store_registry()):
        assert {"hokusai+postgresql", "hokusai+sqlite"} <= set(registry._registry)
