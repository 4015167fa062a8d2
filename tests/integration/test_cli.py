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

import click
import pytest

from mlflow_hokusai_plugin.core.attestation import improvement_predicate
from mlflow_hokusai_plugin.core.issuance import issue_attestation
from mlflow_hokusai_plugin.runtime.signer import Signer

# The script installed beside this interpreter, even when its bin/ is not on PATH (make test).
HOKUSAI = shutil.which("hokusai", path=str(Path(sys.executable).parent))
ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def hokusai(
    *args: str,
    env: dict | None = None,
    input: str | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
):
    assert HOKUSAI, "the hokusai console script is not installed (pip install -e .)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOKUSAI_")}
    return subprocess.run(
        [HOKUSAI, *args],
        env={**clean, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
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


def test_signer_new_prints_a_key_for_the_environment_that_the_server_accepts():
    made = hokusai("signer", "new", "--env")
    assert made.returncode == 0, made.stderr
    (line,) = made.stdout.splitlines()
    name, key = line.split("=", 1)
    assert name == "HOKUSAI_ATTESTER_KEY" and len(key) == 66 and key.startswith("0x")
    address = Signer.from_private_key(key).address
    assert made.stderr.strip() == f"attester {address}"
    shown = hokusai("signer", "address", env={"HOKUSAI_ATTESTER_KEY": key})
    assert shown.stdout.strip() == address
    assert hokusai("signer", "new", "--env").stdout != made.stdout  # a new key each time
    neither = hokusai("signer", "new")
    assert neither.returncode == 2 and "--keystore FILE or --env" in neither.stderr


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
    # A bad argument is a usage error (2), never the exit code of a forgery (1).
    for bad_argument in (["--attester", "0xnotanaddress"], ["--threshold", "0"]):
        refused = hokusai("attestation", "verify", str(path), "--attester", attester, *bad_argument)
        assert refused.returncode == 2 and "Invalid value for" in refused.stderr, refused.stderr
        assert "INVALID" not in refused.stdout

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


@pytest.mark.slow
def test_demo_runs_twice_and_reuses_its_baseline_and_improvement(tmp_path):
    first = hokusai("demo", "--workdir", str(tmp_path / "demo"), timeout=300)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "Running HokusaiEvaluationFlow on Metaflow" in first.stdout
    assert "Baseline hokusai-demo-classifier/1 registered" in first.stdout
    assert "Verification with the attester address alone: VALID" in first.stdout
    assert "DeltaOne on accuracy" in first.stdout
    assert "/#/models/hokusai-demo-classifier/versions/2" in first.stdout

    # The same evaluation again: the same improvement, and the contributors credited once.
    second = hokusai("demo", "--workdir", str(tmp_path / "demo"), timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Baseline hokusai-demo-classifier/1 reused" in second.stdout
    assert "hokusai-demo-classifier/1  ->  hokusai-demo-classifier/2" in second.stdout
    assert "Verification with the attester address alone: VALID" in second.stdout

    def credited(output: str) -> list[str]:
        return [line for line in output.splitlines() if line.strip().startswith("contributor 0x")]

    assert credited(second.stdout) == credited(first.stdout) and len(credited(first.stdout)) == 2


def test_pipeline_help_is_hokusais_lists_the_apis_model_types_and_leaves_no_metaflow_folder(tmp_path):
    from mlflow_hokusai_plugin.core.tags import MODEL_TYPES

    shown = hokusai("pipeline", "run", "--help", cwd=tmp_path, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Usage: hokusai pipeline run [OPTIONS]")
    assert "flow.py" not in shown.stdout
    text = " ".join(shown.stdout.split())
    for option in ("--sample", "--dry-run", "--disable-services", "--baseline-model", "--contributor"):
        assert option in text
    assert f"One of {', '.join(MODEL_TYPES)}." in text
    assert os.listdir(tmp_path) == []


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


def test_keys_list_says_when_there_are_none_and_reads_the_store_from_the_environment(tmp_path):
    store_uri = f"hokusai+sqlite:///{tmp_path / 'keys.db'}"
    empty = hokusai("keys", "list", env={"HOKUSAI_STORE_URI": store_uri})
    assert empty.returncode == 0 and empty.stdout == "" and "no keys" in empty.stderr
    made = hokusai("keys", "create", "--store-uri", store_uri, "--name", "ci", "--role", "read")
    assert made.returncode == 0, made.stderr
    listed = hokusai("keys", "list", env={"HOKUSAI_STORE_URI": store_uri})
    assert listed.returncode == 0 and listed.stderr == ""
    (line,) = listed.stdout.splitlines()
    assert line.split("\t")[2:] == ["ci", "read", "*", "active"]


def test_every_option_read_from_the_environment_says_so_in_its_help():
    from click.testing import CliRunner

    from mlflow_hokusai_plugin.cli import main

    def commands(group, path):
        for name, command in group.commands.items():
            yield [*path, name], command
            if isinstance(command, click.Group):
                yield from commands(command, [*path, name])

    checked = 0
    for path, command in commands(main, []):
        for option in (p for p in command.params if isinstance(p, click.Option) and p.envvar):
            # In-process (click's runner): the help of some 20 commands, not 20 interpreter starts.
            shown = " ".join(CliRunner().invoke(main, [*path, "--help"]).output.split())
            names = [option.envvar] if isinstance(option.envvar, str) else option.envvar
            assert "env var: " + ", ".join(names) in shown, (path, option.name, shown)
            checked += 1
    assert checked >= 10
