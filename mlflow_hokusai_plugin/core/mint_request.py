"""The DeltaVerifier ``MintRequest`` of one attested improvement, derived from its signed Statement.

Every field of the message comes from the Statement's predicate (what was measured and signed),
the chain target and two facts kept beside it (the contributed rows, the deadline), so that the
server signing an improvement, the server renewing its signature and a verifier checking it all
compute the same request. :func:`mint_request_problem` is that check.

The contract has no notion of lower-is-better and pays ``max(0, candidate - baseline)`` on scores of
at most 10000 bps, so the scores are normalised to "higher is better" here (:func:`contract_score_bps`)
such that ``candidate - baseline`` is exactly the Statement's ``delta_one_bps``; a metric that cannot
be expressed that way gets no MintRequest at all (:class:`NotMintable`), never a misleading one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlflow_hokusai_plugin.core import eip712
from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.errors import HokusaiError, ValidationError
from mlflow_hokusai_plugin.core.metrics import HIGHER, LOWER, to_bps

MAX_SCORE_BPS = 10_000
# The DeltaVerifier's launch policy: attester signatures expire five days after signing.
DEFAULT_SIGNATURE_TTL = 5 * 24 * 3600


class NotMintable(HokusaiError):
    """This improvement cannot be expressed as a MintRequest the contract pays honestly; the
    message says why (it goes into the document's ``eip712_omitted`` and a version tag)."""


@dataclass(frozen=True)
class OnchainTarget:
    """Where the MintRequest will be verified: the DeltaVerifier and the model's on-chain id."""

    chain_id: int
    verifying_contract: str
    model_id: int

    def __post_init__(self) -> None:
        # Checksummed, so two targets compare equal however the address was written.
        address = to_checksum_address(self.verifying_contract, "verifying_contract")
        object.__setattr__(self, "verifying_contract", address)

    @classmethod
    def of(cls, typed_data: Mapping[str, Any]) -> OnchainTarget:
        """The target a signed MintRequest names (its domain and ``modelId``)."""
        domain = typed_data["domain"]
        chain_id, model_id = domain["chainId"], typed_data["message"]["modelId"]
        for field, value in (("domain.chainId", chain_id), ("message.modelId", model_id)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(field, "must be an integer")
        return cls(chain_id, domain["verifyingContract"], model_id)


def contract_score_bps(value: float, direction: str, field: str = "value") -> int:
    """A benchmark value as the contract's score: 0..10000 bps, higher is better.

    Higher-is-better: ``round(value * 10000)``; lower-is-better: ``10000 - round(value * 10000)``.
    Either way the value must lie in [0, 1], so that candidate - baseline is the DeltaOne in bps.

    >>> contract_score_bps(0.8234, "higher"), contract_score_bps(0.25, "lower")
    (8234, 7500)
    >>> contract_score_bps(1.7, "lower")
    Traceback (most recent call last):
    ...
    mlflow_hokusai_plugin.core.mint_request.NotMintable: value is 1.7, outside [0, 1]: ...
    """
    bps = to_bps(value, field)
    if not 0 <= bps <= MAX_SCORE_BPS:
        raise NotMintable(
            f"{field} is {value!r}, outside [0, 1]: the DeltaVerifier takes scores of 0 to 10000 bps "
            f"where higher is better, and a {direction}-is-better value outside [0, 1] has no such score"
        )
    if direction == HIGHER:
        return bps
    if direction == LOWER:
        return MAX_SCORE_BPS - bps
    raise ValidationError(f"{field}.direction", f'must be "higher" or "lower", got {direction!r}')


def mint_request(
    predicate: Mapping[str, Any],
    *,
    onchain: OnchainTarget,
    attestation_hash: str,
    deadline: int,
    total_samples: int = 0,
    idempotency_key: str | None = None,
) -> dict:
    """The full EIP-712 MintRequest of the improvement ``predicate`` states.

    ``attestation_hash`` is the hex SHA-256 of the DSSE payload bytes (the document id),
    ``deadline`` unix seconds, ``total_samples`` the contributed rows (0 when unknown),
    ``idempotency_key`` the key already signed for it (a renewal), else :func:`improvement_key`. Raises
    :class:`NotMintable` when the benchmark metric has no honest contract score, and
    :class:`ValidationError` when the predicate lacks a fact the request needs.
    """
    facts = _facts(predicate)
    return eip712.mint_request_typed_data(
        chain_id=onchain.chain_id,
        verifying_contract=onchain.verifying_contract,
        model_id=onchain.model_id,
        pipeline_run_id=facts["pipeline_run_id"],
        baseline_score_bps=facts["baseline_score_bps"],
        candidate_score_bps=facts["candidate_score_bps"],
        total_samples=total_samples,
        benchmark_spec_hash=eip712.benchmark_spec_hash(facts["benchmark_spec"]),
        dataset_hash=eip712.bytes32_from_digest(facts["dataset_digest"]),
        attestation_hash=attestation_hash,
        idempotency_key=idempotency_key or improvement_key(predicate, onchain),
        metric_name=facts["metric"],
        metric_family=facts["model_type"],
        contributors=facts["contributors"],
        baseline_commitment=eip712.commitment(facts["baseline_digest"], "baseline.digest"),
        candidate_commitment=eip712.commitment(facts["model_digest"], "model.digest"),
        deadline=deadline,
    )


def improvement_key(predicate: Mapping[str, Any], onchain: OnchainTarget) -> str:
    """The ``idempotencyKey`` of the improvement ``predicate`` states, on ``onchain``."""
    model = _dict(predicate.get("model"), "model")
    baseline = _dict(predicate.get("baseline"), "baseline")
    return eip712.idempotency_key(
        chain_id=onchain.chain_id,
        verifying_contract=onchain.verifying_contract,
        onchain_model_id=onchain.model_id,
        model_id=_text(model.get("id"), "model.id"),
        model_digest=_text(model.get("digest"), "model.digest"),
        baseline_model_id=_text(baseline.get("model_id"), "baseline.model_id"),
        baseline_digest=_text(baseline.get("digest"), "baseline.digest"),
    )


def mint_request_problem(
    typed_data: Mapping[str, Any], predicate: Mapping[str, Any], payload_sha256: str
) -> str:
    """Empty when ``typed_data`` (current types) is exactly the MintRequest of ``predicate``, but
    for what is not derived from the Statement (``totalSamples``, ``deadline``, costs); else the
    first field that differs and why."""
    try:
        expected = mint_request(
            predicate,
            onchain=OnchainTarget.of(typed_data),
            attestation_hash=payload_sha256,
            deadline=typed_data["message"]["payload"]["deadline"],
            total_samples=typed_data["message"]["payload"]["totalSamples"],
        )
    except NotMintable as exc:
        return f"the Statement's improvement is not mintable ({exc}), yet a MintRequest was signed"
    except (ValidationError, KeyError, TypeError, ValueError, OverflowError) as exc:
        return f"typed_data does not carry a MintRequest of this Statement: {exc}"
    signed = typed_data["message"]
    legacy_key = _legacy_key(predicate, payload_sha256)
    if str(_at(signed, _KEY)).lower() == legacy_key:
        # A renewed document of the older types keeps the key it was first signed with.
        expected["message"]["payload"]["anchors"]["idempotencyKey"] = legacy_key
    for path in _COMPARED:
        want, got = _at(expected["message"], path), _at(signed, path)
        if isinstance(got, str) and isinstance(want, str):
            got, want = got.lower(), want.lower()
        if got != want:
            return f"typed_data message.{'.'.join(path)} is {got!r}, the Statement gives {want!r}"
    return ""


# What a verifier recomputes from the Statement: everything but totalSamples, deadline and the
# costs, which the Statement does not state.
_COMPARED = (
    ("modelId",),
    ("payload", "pipelineRunId"),
    ("payload", "baselineScoreBps"),
    ("payload", "candidateScoreBps"),
    ("payload", "anchors", "benchmarkSpecHash"),
    ("payload", "anchors", "datasetHash"),
    ("payload", "anchors", "attestationHash"),
    ("payload", "anchors", "idempotencyKey"),
    ("payload", "anchors", "metricName"),
    ("payload", "anchors", "metricFamily"),
    ("payload", "baselineCommitment"),
    ("payload", "candidateCommitment"),
    ("contributors",),
)


_KEY = ("payload", "anchors", "idempotencyKey")


def _legacy_key(predicate: Mapping[str, Any], payload_sha256: str) -> str | None:
    try:
        return eip712.legacy_idempotency_key(
            predicate["model"]["id"], predicate["baseline"]["model_id"], payload_sha256
        )
    except (ValidationError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class LineageFacts:
    """What the registry knows of the weights of an improvement about to get a MintRequest.

    ``baseline_is_genesis``: the baseline is its registered model's first baseline (whose digest
    the operator sets as the on-chain genesis). ``baseline_request``: the typed data of the
    baseline's own MintRequest, when the baseline is an attested improvement. ``same_weights_as``:
    another version of the registered model with the candidate's artifact digest.
    """

    baseline_model_id: str
    baseline_is_genesis: bool
    baseline_request: Mapping[str, Any] | None
    same_weights_as: str | None = None


def lineage_problem(typed_data: Mapping[str, Any], lineage: LineageFacts) -> None:
    """Raise :class:`NotMintable` unless ``typed_data`` pays new weights from a baseline the chain
    can have as its head, scored as it was when it got there.

    The contract only checks that ``baselineCommitment`` is the head: it cannot tell that the same
    weights were paid for before, or that a baseline's score is lower than the score its weights
    were paid at. One set of weights has one score per on-chain model: anything else would let the
    same measured improvement be paid again.
    """
    payload = typed_data["message"]["payload"]
    if payload["candidateCommitment"] == payload["baselineCommitment"]:
        raise NotMintable("the improved version's weights are its baseline's: there is nothing new to pay")
    if lineage.same_weights_as:
        raise NotMintable(
            f"its weights are those of {lineage.same_weights_as}, registered before: the chain pays "
            "for a set of weights once"
        )
    request = lineage.baseline_request
    if request is None:
        if lineage.baseline_is_genesis:
            return
        raise NotMintable(
            f"its baseline {lineage.baseline_model_id} is neither its model's first baseline (the "
            "on-chain genesis) nor an improvement with a MintRequest: the chain's lineage never "
            "reaches its weights"
        )
    earlier = request["message"]["payload"]
    if eip712.types_generation(request) == eip712.CURRENT_TYPES and (
        earlier["candidateCommitment"] != payload["baselineCommitment"]
    ):
        raise NotMintable(
            f"the MintRequest of its baseline {lineage.baseline_model_id} commits to other weights"
        )
    for key, what in (("metricName", "benchmark metric"), ("benchmarkSpecHash", "benchmark")):
        if earlier["anchors"][key] != payload["anchors"][key]:
            raise NotMintable(
                f"its baseline {lineage.baseline_model_id} was paid on another {what} "
                f"({earlier['anchors'][key]}): one model's lineage is paid on one benchmark"
            )
    if earlier["candidateScoreBps"] != payload["baselineScoreBps"]:
        raise NotMintable(
            f"its baseline {lineage.baseline_model_id} was signed at {earlier['candidateScoreBps']} "
            f"bps, this request scores it {payload['baselineScoreBps']}: one set of weights has one score"
        )


def _at(message: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        message = message.get(key) if isinstance(message, dict) else None
    return message


def _facts(predicate: Mapping[str, Any]) -> dict:
    if not isinstance(predicate, Mapping):
        raise ValidationError("predicate", "must be an object")
    benchmark = _dict(predicate.get("benchmark"), "benchmark")
    metric = _text(benchmark.get("metric"), "benchmark.metric")
    dataset_digest = benchmark.get("dataset_digest")
    if not dataset_digest:
        raise ValidationError(
            "benchmark.dataset_digest", "the on-chain MintRequest needs the benchmark dataset digest"
        )
    model = _dict(predicate.get("model"), "model")
    baseline = _dict(predicate.get("baseline"), "baseline")
    metrics = _dict(predicate.get("metrics"), "metrics")
    delta = _dict(
        _dict(predicate.get("metric_deltas"), "metric_deltas").get(metric), f"metric_deltas.{metric}"
    )
    direction = delta.get("direction")
    if direction not in (HIGHER, LOWER):
        # Never guessed: a lower-is-better metric scored as higher-is-better would pay nothing.
        raise ValidationError(f"metric_deltas.{metric}.direction", 'must be "higher" or "lower"')
    baseline_value = _dict(metrics.get("baseline"), "metrics.baseline").get(metric)
    candidate_value = _dict(metrics.get("candidate"), "metrics.candidate").get(metric)
    baseline_bps = contract_score_bps(baseline_value, direction, f"metrics.baseline.{metric}")
    candidate_bps = contract_score_bps(candidate_value, direction, f"metrics.candidate.{metric}")
    if candidate_bps - baseline_bps != predicate.get("delta_one_bps"):
        # Cannot happen for a Statement this package built; a hand-made one must not mint more.
        raise NotMintable(
            f"scores {baseline_bps} -> {candidate_bps} differ by {candidate_bps - baseline_bps} bps, "
            f"the Statement claims {predicate.get('delta_one_bps')}"
        )
    contributors = predicate.get("contributors")
    if not isinstance(contributors, list):
        raise ValidationError("contributors", "must be a list")
    return {
        "metric": metric,
        "dataset_digest": dataset_digest,
        "model_type": model.get("model_type") or "",
        # The verifier refuses an empty run id; without a pipeline run, the MLflow run that made
        # the model is the run that produced it.
        "pipeline_run_id": predicate.get("pipeline_run_id")
        or _dict(predicate.get("mlflow_run_ids") or {}, "mlflow_run_ids").get("candidate")
        or "",
        "baseline_score_bps": baseline_bps,
        "candidate_score_bps": candidate_bps,
        "benchmark_spec": {
            "metric": metric,
            "dataset_digest": dataset_digest,
            "model_type": model.get("model_type"),
        },
        "model_digest": model.get("digest"),
        "baseline_digest": baseline.get("digest"),
        "contributors": [
            {"address": _dict(c, "contributors[]").get("address"), "weight_bps": c.get("weight_bps")}
            for c in contributors
        ],
    }


def _dict(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be an object")
    return value


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(field, "must be a non-empty string")
    return value
