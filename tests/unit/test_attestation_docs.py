"""docs/attestation.md runs as written: its worked example is what this package signs, and its
Python snippets print what the page says, in a fresh interpreter that has only eth-account."""

import calendar
import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from mlflow_hokusai_plugin.core.attestation import verify_document
from mlflow_hokusai_plugin.core.eip712 import MINT_REQUEST_TYPES
from mlflow_hokusai_plugin.core.issuance import attest_improvement
from mlflow_hokusai_plugin.core.mint_request import OnchainTarget
from mlflow_hokusai_plugin.runtime.signer import Signer
from tests.doc_examples import fenced_blocks

PAGE = Path(__file__).resolve().parents[2] / "docs" / "attestation.md"
EXAMPLE_KEY = "0x" + hashlib.sha256(b"hokusai attestation example").hexdigest()


def blocks(language: str) -> list[str]:
    return fenced_blocks("docs/attestation.md", language)


def example_document() -> dict:
    """The page's example, signed afresh (eth-account's signatures are deterministic, RFC 6979)."""
    signed_at = calendar.timegm(time.strptime("2026-12-01T12:00:00", "%Y-%m-%dT%H:%M:%S"))
    return attest_improvement(
        Signer.from_private_key(EXAMPLE_KEY),
        onchain=OnchainTarget(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3", 21),
        deadline=signed_at + 432_000,
        total_samples=1200,
        model_id="churn/2",
        baseline_model_id="churn/1",
        benchmark_metric="accuracy",
        contributors=[{"address": "0x" + "7a" * 20, "weight_bps": 10_000, "samples": 1200}],
        baseline_metrics={"accuracy": 0.75},
        candidate_metrics={"accuracy": 0.82},
        baseline_run_id="5f1c0a",
        run_id="9d2e7b",
        dataset_digest=hashlib.sha256(b"benchmark").hexdigest(),
        model_digest=hashlib.sha256(b"churn/2 weights").hexdigest(),
        baseline_digest=hashlib.sha256(b"churn/1 weights").hexdigest(),
        created_at="2026-12-01T12:00:00.000Z",
        plugin_version="0.1.0",
        project="churn",
        model_type="classification",
    ).document


def test_the_worked_example_is_what_this_package_signs_and_it_verifies():
    (example,) = blocks("json")
    document = json.loads(example)
    assert document == example_document()
    verdict = verify_document(document, [Signer.from_private_key(EXAMPLE_KEY).address])
    assert verdict.valid, verdict.message
    assert verdict.eip712["types"] == "current"


def test_the_type_strings_on_the_page_are_the_ones_signed():
    page_types = next(block for block in blocks("") if block.startswith("MintRequest("))
    ours = [
        f"{name}({','.join(field['type'] + ' ' + field['name'] for field in MINT_REQUEST_TYPES[name])})"
        for name in ("MintRequest", "MintRequestPayload", "BenchmarkAnchors", "Contributor")
    ]
    # The page wraps long type strings after a comma; the contract hashes them on one line each.
    assert re.sub(r",\n\s+", ",", page_types).splitlines() == ours


def test_the_snippets_print_what_the_page_says(tmp_path):
    (example,) = blocks("json")
    (tmp_path / "attestation.json").write_text(example)
    snippets, printed = blocks("python"), blocks("text")
    assert len(snippets) == len(printed) == 2
    for count in (1, 2):  # the second snippet continues the first
        script = "\n".join(snippets[:count])
        result = subprocess.run(
            [sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        expected = "".join(printed[:count])
        assert result.stdout == expected
