"""Our EIP-712 MintRequest signatures against a real EVM verifier.

``MintVerifier.sol`` (beside this file) implements the DeltaVerifier's specification on its own: its
type strings, domain and checks are written from the specification, not from our Python code. It is
compiled with solc-js and run in py-evm (see ``chain.py``). The messages are built and signed only
by ``mlflow_hokusai_plugin`` (``mint_request_typed_data``, ``Signer``, ``ordered_signatures``); this
file merely turns the typed data's ``message`` into call arguments.
"""

from __future__ import annotations

import copy

import pytest
from eth_utils import keccak

from mlflow_hokusai_plugin.core.attestation import document_predicate
from mlflow_hokusai_plugin.core.eip712 import (
    LEGACY_TYPES,
    mint_request_typed_data,
    ordered_signatures,
    typed_data_digest,
    types_generation,
)
from mlflow_hokusai_plugin.core.issuance import attest_improvement, cosign_document, renew_mint_request
from mlflow_hokusai_plugin.core.mint_request import LineageFacts, OnchainTarget
from mlflow_hokusai_plugin.runtime.signer import Signer
from tests.evm.chain import HERE, Chain, Contract, EvmSetupError, Reverted, compile_contract

pytestmark = pytest.mark.timeout(600)  # the first run installs solc-js and compiles

MODEL_ID = 21
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def h32(label: str) -> str:
    """A distinct ``0x`` + 64-hex value per label."""
    return "0x" + keccak(text=label).hex()


GENESIS = h32("weights/genesis")
ATTESTER_A = Signer.from_private_key(h32("attester/a"))
ATTESTER_B = Signer.from_private_key(h32("attester/b"))
OUTSIDER = Signer.from_private_key(h32("attester/outsider"))


# ----- fixtures -----


@pytest.fixture(scope="session")
def artifact():
    """A function giving the compiled MintVerifier. It is called from the tests' bodies, so a failed
    npm install or compile FAILS each test (it is never a skip), and is attempted only once."""
    outcome = {}

    def load():
        if not outcome:
            try:
                outcome["artifact"] = compile_contract(HERE / "MintVerifier.sol", "MintVerifier")
            except EvmSetupError as exc:
                outcome["error"] = str(exc)
        if "error" in outcome:
            pytest.fail(f"cannot build MintVerifier.sol with solc-js: {outcome['error']}", pytrace=False)
        return outcome["artifact"]

    return load


@pytest.fixture(scope="session")
def chain():
    return Chain()


@pytest.fixture()
def deploy(chain, artifact):
    """Deploy a fresh verifier with ``attesters``, ``threshold`` and the genesis head of MODEL_ID."""

    def _deploy(attesters=(ATTESTER_A,), threshold=1, genesis=GENESIS) -> Contract:
        contract = chain.deploy(artifact())
        for attester in attesters:
            chain.transact(contract, "setAttester", attester.address, True)
        chain.transact(contract, "setAttesterThreshold", threshold)
        if genesis is not None:
            chain.transact(contract, "setGenesis", MODEL_ID, bytes.fromhex(genesis[2:]))
        return contract

    return _deploy


# ----- helpers -----


def typed_data(chain: Chain, contract: Contract, **overrides) -> dict:
    """A MintRequest for ``contract`` built by our code; ``overrides`` are its keyword arguments."""
    arguments = dict(
        chain_id=chain.chain_id,
        verifying_contract=contract.address,
        model_id=MODEL_ID,
        pipeline_run_id="run-0001",
        baseline_score_bps=7000,
        candidate_score_bps=7350,
        total_samples=5000,
        benchmark_spec_hash=h32("benchmark-spec"),
        dataset_hash=h32("dataset"),
        attestation_hash=h32("attestation"),
        idempotency_key=h32("improvement/1"),
        metric_name="accuracy",
        metric_family="classification",
        contributors=[{"address": "0x" + "11" * 20, "weight_bps": 10_000}],
        baseline_commitment=GENESIS,
        candidate_commitment=h32("weights/1"),
        deadline=chain.pending_timestamp + 3600,
    )
    arguments.update(overrides)
    return mint_request_typed_data(**arguments)


def _abi_value(param: dict, value):
    """``value`` from the typed data's message as eth-abi wants it for the ABI parameter ``param``.

    Struct members are taken by name in the order of the contract's ABI, so a member our message
    lacks (or names differently) fails here instead of being silently filled in.
    """
    type_ = param["type"]
    if type_.endswith("[]"):
        element = {**param, "type": type_[:-2]}
        return [_abi_value(element, item) for item in value]
    if type_ == "tuple":
        return tuple(_abi_value(c, value[c["name"]]) for c in param["components"])
    if type_ == "bytes32":
        return bytes.fromhex(value[2:])
    return value


def call_args(contract: Contract, data: dict) -> tuple:
    """``(modelId, payload, contributors)`` of ``hashMintRequest`` / ``submitMintRequest``."""
    inputs = contract.function("hashMintRequest")["inputs"]
    message = data["message"]
    return tuple(_abi_value(param, message[param["name"]]) for param in inputs)


def sig_bytes(signatures) -> list[bytes]:
    return [s if isinstance(s, bytes) else bytes.fromhex(s.removeprefix("0x")) for s in signatures]


def submit(chain: Chain, contract: Contract, data: dict, signatures) -> dict:
    return chain.transact(contract, "submitMintRequest", *call_args(contract, data), sig_bytes(signatures))


def sign_and_submit(chain: Chain, contract: Contract, data: dict, signers=(ATTESTER_A,)) -> dict:
    signatures = ordered_signatures(data, ["0x" + s.sign_typed_data(data).hex() for s in signers])
    return submit(chain, contract, data, signatures)


def head(chain: Chain, contract: Contract) -> str:
    return "0x" + chain.call(contract, "currentHead", MODEL_ID).hex()


def refused(error: str):
    """``pytest.raises`` for a revert with the custom error ``error``."""
    return pytest.raises(Reverted, match=rf"^reverted with {error}\(")


# ----- 1. the digest -----


@pytest.mark.parametrize(
    "contributors",
    [
        [
            {"address": "0x" + "a1" * 20, "weight_bps": 5000},
            {"address": "0x" + "02" * 20, "weight_bps": 3000},
            {"address": "0x" + "fe" * 20, "weight_bps": 2000},
        ],
        [{"address": "0x" + f"{i + 1:040x}", "weight_bps": 100} for i in range(100)],
    ],
    ids=["three-contributors", "hundred-contributors"],
)
def test_contract_digest_equals_ours(chain, deploy, contributors):
    contract = deploy()
    data = typed_data(
        chain,
        contract,
        pipeline_run_id="exécution-№7 — 実行 🚀",
        metric_name="précision@k",
        metric_family="分類/ранжирование",
        contributors=contributors,
        max_cost_usd_micro=12_345_678,
        actual_cost_usd_micro=2**200 + 1,
        total_samples=2**256 - 1,
    )
    assert chain.call(contract, "hashMintRequest", *call_args(contract, data)) == typed_data_digest(data)


# ----- 2. a mint, and its replay -----


def test_signed_request_mints_once_and_advances_the_head(chain, deploy):
    contract = deploy()
    data = typed_data(chain, contract)
    key = bytes.fromhex(data["message"]["payload"]["anchors"]["idempotencyKey"][2:])

    receipt = sign_and_submit(chain, contract, data)

    assert receipt["output"] == 350
    assert contract.events(receipt["logs"], "Minted") == [
        {"modelId": MODEL_ID, "idempotencyKey": key, "deltaBps": 350}
    ]
    credited = contract.events(receipt["logs"], "ContributorCredited")
    assert [(c["walletAddress"].lower(), c["weight"]) for c in credited] == [("0x" + "11" * 20, 10_000)]
    assert chain.call(contract, "totalDeltaBps", MODEL_ID) == 350
    assert chain.call(contract, "idempotencyKeyUsed", key) is True
    assert head(chain, contract) == data["message"]["payload"]["candidateCommitment"]

    with refused("IdempotencyKeyUsed"):
        sign_and_submit(chain, contract, data)
    assert chain.call(contract, "totalDeltaBps", MODEL_ID) == 350


# ----- 3. lineage -----


def test_lineage_chain_and_sibling(chain, deploy):
    contract = deploy()
    baseline = GENESIS
    score = 7000
    for step in (1, 2, 3):
        candidate = h32(f"weights/{step}")
        data = typed_data(
            chain,
            contract,
            idempotency_key=h32(f"improvement/{step}"),
            baseline_score_bps=score,
            candidate_score_bps=score + 100,
            baseline_commitment=baseline,
            candidate_commitment=candidate,
        )
        assert sign_and_submit(chain, contract, data)["output"] == 100
        assert head(chain, contract) == candidate
        baseline, score = candidate, score + 100
    assert chain.call(contract, "totalDeltaBps", MODEL_ID) == 300

    # A sibling of step 2: improves on weights/1, which is no longer the head (weights/3 is).
    sibling = dict(
        idempotency_key=h32("improvement/sibling"),
        baseline_score_bps=7100,
        candidate_score_bps=7250,
        candidate_commitment=h32("weights/sibling"),
    )
    stale = typed_data(chain, contract, baseline_commitment=h32("weights/1"), **sibling)
    with refused("LineageMismatch") as excinfo:
        sign_and_submit(chain, contract, stale)
    assert excinfo.value.args == (keccak(text="weights/1"), keccak(text="weights/3"))
    assert head(chain, contract) == h32("weights/3")

    # The refusal burned nothing: the same improvement re-based on the head mints.
    rebased = typed_data(chain, contract, baseline_commitment=h32("weights/3"), **sibling)
    assert sign_and_submit(chain, contract, rebased)["output"] == 150
    assert head(chain, contract) == h32("weights/sibling")


# ----- 4. deadline -----


def test_deadline(chain, deploy):
    contract = deploy()
    start = chain.pending_timestamp
    expiring = typed_data(chain, contract, deadline=start + 60)
    chain.time_travel(start + 3600)
    assert chain.pending_timestamp > start + 60

    with refused("DeadlineExpired"):
        sign_and_submit(chain, contract, expiring)

    renewed = typed_data(chain, contract, deadline=chain.pending_timestamp + 600)
    assert renewed["message"]["payload"]["anchors"] == expiring["message"]["payload"]["anchors"]
    assert sign_and_submit(chain, contract, renewed)["output"] == 350


# ----- 5. two attesters -----


def test_two_of_two_attesters(chain, deploy):
    contract = deploy(attesters=(ATTESTER_A, ATTESTER_B), threshold=2)
    data = typed_data(chain, contract)
    raw = ["0x" + s.sign_typed_data(data).hex() for s in (ATTESTER_A, ATTESTER_B)]
    ascending = ordered_signatures(data, raw)
    assert ascending == ordered_signatures(data, list(reversed(raw)))
    signers = [ATTESTER_A, ATTESTER_B]
    signers.sort(key=lambda s: int(s.address, 16))
    assert sig_bytes(ascending) == [s.sign_typed_data(data) for s in signers]

    with refused("SignersNotAscending"):
        submit(chain, contract, data, list(reversed(ascending)))
    with refused("InsufficientSignatures"):
        submit(chain, contract, data, ascending[:1])
    with refused("DuplicateSigner"):
        submit(chain, contract, data, [ascending[0], ascending[0]])
    with refused("UnknownAttester"):
        submit(chain, contract, data, [ascending[0], OUTSIDER.sign_typed_data(data)])

    assert submit(chain, contract, data, ascending)["output"] == 350


# ----- 6. the older payload types -----


def test_signature_over_legacy_payload_types_is_refused(chain, deploy):
    contract = deploy()
    data = typed_data(chain, contract)
    legacy = copy.deepcopy(data)
    removed = legacy["types"]["MintRequestPayload"][-3:]
    assert [m["name"] for m in removed] == ["baselineCommitment", "candidateCommitment", "deadline"]
    del legacy["types"]["MintRequestPayload"][-3:]
    for member in removed:
        del legacy["message"]["payload"][member["name"]]
    assert types_generation(legacy) == LEGACY_TYPES
    assert typed_data_digest(legacy) != typed_data_digest(data)

    with refused("UnknownAttester"):
        submit(chain, contract, data, [ATTESTER_A.sign_typed_data(legacy)])

    # The same request signed over today's types is accepted.
    assert submit(chain, contract, data, [ATTESTER_A.sign_typed_data(data)])["output"] == 350


# ----- fail-closed details of the verifier itself -----


def test_zero_threshold_and_high_s_are_refused(chain, deploy):
    closed = deploy(threshold=0)
    data = typed_data(chain, closed)
    with refused("ThresholdNotSet"):
        sign_and_submit(chain, closed, data)

    contract = deploy()
    data = typed_data(chain, contract)
    signature = ATTESTER_A.sign_typed_data(data)
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    assert s <= SECP256K1_N // 2  # eth-account produces low-s signatures
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28
    with refused("MalleableSignature"):
        submit(chain, contract, data, [twin])
    assert submit(chain, contract, data, [signature])["output"] == 350


# ----- 8. attestation documents, as the server issues, renews and a second attester co-signs them -----


def issued(
    chain: Chain,
    contract: Contract,
    model: str,
    baseline: str,
    values: tuple[float, float],
    signer=ATTESTER_A,
    lineage=None,
    model_digest=None,
):
    """The attestation document of ``model`` improving ``baseline`` on log_loss (lower is better),
    made by the package's one issuing path; the artifact digests are those of the labels."""
    return attest_improvement(
        signer,
        onchain=OnchainTarget(chain.chain_id, contract.address, MODEL_ID),
        deadline=chain.pending_timestamp + 3600,
        total_samples=1200,
        model_id=model,
        baseline_model_id=baseline,
        benchmark_metric="log_loss",
        contributors=[{"address": "0x" + "11" * 20, "weight_bps": 10_000}],
        baseline_metrics={"log_loss": values[0]},
        candidate_metrics={"log_loss": values[1]},
        baseline_run_id="run-b",
        run_id="run-c",
        dataset_digest="da" * 32,
        model_digest=model_digest or h32(model)[2:],
        baseline_digest=h32(baseline)[2:],
        created_at="2026-12-03T00:00:00.000Z",
        plugin_version="test",
        project="churn",
        model_type="classification",
        lineage=lineage,
    ).document


def submit_document(chain: Chain, contract: Contract, document: dict) -> dict:
    part = document["eip712"]
    return submit(chain, contract, part["typed_data"], part["signatures"])


def test_issued_documents_mint_what_their_statements_claim_along_the_registry_lineage(chain, deploy):
    contract = deploy(genesis=h32("churn/1"))
    first = issued(chain, contract, "churn/2", "churn/1", (0.30, 0.25))
    second = issued(chain, contract, "churn/3", "churn/2", (0.25, 0.21))
    sibling = issued(chain, contract, "churn/4", "churn/1", (0.30, 0.24))
    for document in (first, second):
        receipt = submit_document(chain, contract, document)
        claimed = document_predicate(document)["delta_one_bps"]
        assert receipt["output"] == claimed  # log_loss 0.30 -> 0.25 pays 500 bps, as signed
    assert chain.call(contract, "totalDeltaBps", MODEL_ID) == 500 + 400
    assert head(chain, contract) == "0x" + h32("churn/3")[2:]
    # The sibling of an improvement that minted is refused, its key unburnt.
    with refused("LineageMismatch"):
        submit_document(chain, contract, sibling)


def test_a_renewed_document_mints_after_the_original_expired_and_only_once(chain, deploy):
    contract = deploy(genesis=h32("churn/1"))
    document = issued(chain, contract, "churn/2", "churn/1", (0.30, 0.25))
    chain.time_travel(chain.pending_timestamp + 7200)
    with refused("DeadlineExpired"):
        submit_document(chain, contract, document)

    def renew(signed: dict) -> dict:
        deadline = chain.pending_timestamp + 3600
        return renew_mint_request(
            signed,
            ATTESTER_A,
            onchain=OnchainTarget(chain.chain_id, contract.address, MODEL_ID),
            deadline=deadline,
            total_samples=1200,
            renewed_at="2026-12-03",
        )

    renewed = renew(document)
    assert submit_document(chain, contract, renewed)["output"] == 500
    # Renewing again gives another signature over the same key: it can never mint twice.
    again = renew(renewed)
    with refused("IdempotencyKeyUsed"):
        submit_document(chain, contract, again)


def test_a_cosigned_document_meets_a_two_of_two_threshold(chain, deploy):
    contract = deploy(attesters=(ATTESTER_A, ATTESTER_B), threshold=2, genesis=h32("churn/1"))
    document = issued(chain, contract, "churn/2", "churn/1", (0.30, 0.25))
    with refused("InsufficientSignatures"):
        submit_document(chain, contract, document)
    assert submit_document(chain, contract, cosign_document(document, ATTESTER_B))["output"] == 500


def test_the_reviewers_double_payments_are_not_signed(chain, deploy):
    """The same weights as the baseline, and a head re-registered at a lower score: the package
    signs no MintRequest for them (core.mint_request.lineage_problem), so nothing reaches the chain."""
    contract = deploy(genesis=h32("churn/1"))
    genesis = LineageFacts("churn/1", baseline_is_genesis=True, baseline_request=None)
    same = issued(
        chain, contract, "churn/2", "churn/1", (0.30, 0.25), lineage=genesis, model_digest=h32("churn/1")[2:]
    )
    assert "eip712" not in same and "baseline's" in same["eip712_omitted"]
    paid = issued(chain, contract, "churn/2", "churn/1", (0.30, 0.25), lineage=genesis)
    assert submit_document(chain, contract, paid)["output"] == 500
    lowered = issued(
        chain,
        contract,
        "churn/3",
        "churn/2",
        (0.90, 0.21),
        lineage=LineageFacts("churn/2", False, paid["eip712"]["typed_data"]),
    )
    assert "one set of weights has one score" in lowered["eip712_omitted"]
