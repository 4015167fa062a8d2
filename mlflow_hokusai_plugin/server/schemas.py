"""Pydantic models of every Hokusai route: what requests must look like and what answers look like.

The same models validate request bodies (``api_views``) and generate the OpenAPI document
(``openapi``), so the document cannot drift from what the server enforces. The query-parameter
models describe the checks ``views`` makes by hand on its GET routes.

A failed validation becomes one :class:`mlflow_hokusai_plugin.core.errors.ValidationError` naming
the field the way clients write it (``contributors[1].address``, ``threshold``), which the routes
answer with HTTP 400 ``INVALID_PARAMETER_VALUE`` ``"<field>: <message>"``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.attestation import DOCUMENT_STATUSES
from mlflow_hokusai_plugin.core.contributors import MAX_CONTRIBUTORS, TOTAL_BPS, parse_contributors
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.core.lineage import LINEAGE_DIRECTIONS
from mlflow_hokusai_plugin.core.storage_bounds import (
    BENCHMARK_METRIC_LENGTH,
    MLFLOW_DESCRIPTION_LENGTH,
    MLFLOW_MODEL_NAME_LENGTH,
    PIPELINE_RUN_ID_LENGTH,
    SAMPLES_MAX,
)

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
MODEL_ID_PATTERN = r"^[^/\x00]+/[1-9][0-9]*$"
PROJECT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# What the store can hold (core.storage_bounds): a request within these is never refused by the
# database after MLflow has written the version.
MAX_NAME_LENGTH = MLFLOW_MODEL_NAME_LENGTH  # MLflow's registered_models.name
MAX_METRIC_LENGTH = BENCHMARK_METRIC_LENGTH  # MLflow's metric key, and hokusai_lineage_edges.benchmark_metric

# The model URI forms /models/register accepts.
RUNS_URI = re.compile(r"runs:/(?P<run_id>[^/\x00]+)/(?P<path>[^\x00]+)")
LOGGED_MODEL_URI = re.compile(r"models:/(?P<model_id>m-[0-9A-Za-z]+)/?")
VERSION_URI = re.compile(r"models:/(?P<name>[^/@\x00]+)/(?P<version>[1-9][0-9]*)")
MODEL_URI_FORMS = "runs:/<run_id>/<artifact_path>, models:/<name>/<version> or models:/m-<logged model id>"
MODEL_URI_PATTERN = r"^(runs:/[^/\x00]+/[^\x00]+|models:/m-[0-9A-Za-z]+/?|models:/[^/@\x00]+/[1-9][0-9]*)$"
# Text that PostgreSQL can store: no NUL character (lone surrogates are refused too).
TEXT_PATTERN = r"^[^\x00]*$"
EXAMPLE_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
ModelType = Literal["lead_scoring", "classification", "regression", "ranking"]
AttestationStatus = Literal["pending", "signed", "failed", "not_applicable"]
assert tuple(ModelType.__args__) == T.MODEL_TYPES and tuple(AttestationStatus.__args__) == DOCUMENT_STATUSES


def _problem(message: str) -> PydanticCustomError:
    """A field validator's refusal: the field's own location names it, ``message`` says why."""
    return PydanticCustomError("hokusai", "{message}", {"message": message})


def _checked(check):
    """An after-validator from a ``core`` check that raises ValidationError: keep its message."""

    def run(value):
        try:
            return check(value)
        except ValidationError as exc:
            raise _problem(exc.message) from None

    return AfterValidator(run)


def _schema(pattern: str, **extra: Any) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": pattern, **extra})


def text_problem(value: str) -> str | None:
    r"""Why a string cannot be stored as text (PostgreSQL refuses NUL), or None.

    >>> text_problem("ok"), text_problem("a\x00b")
    (None, 'must not contain NUL (U+0000) characters')
    """
    if "\x00" in value:
        return "must not contain NUL (U+0000) characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (no lone surrogates)"
    return None


def find_bad_text(value: Any, path: str = "") -> tuple[str, str] | None:
    """The (field path, problem) of the first string in a JSON value that cannot be stored."""
    if isinstance(value, str):
        problem = text_problem(value)
        return (path or "body", problem) if problem else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        here = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))
        if isinstance(key, str) and text_problem(key):
            return here, f"the key {text_problem(key)}"
        found = find_bad_text(item, here)
        if found:
            return found
    return None


def find_non_finite(value: Any, path: str = "") -> tuple[str, str] | None:
    """The (field path, problem) of the first number in a JSON value that is not finite.

    ``NaN`` and ``Infinity`` are not JSON, and a number beyond the float range (``1e999``) parses
    as infinity: none of them can be stored, hashed or signed, wherever they sit.

    >>> find_non_finite({"contributors": [{"samples": float("inf")}]})[0]
    'contributors[0].samples'
    >>> find_non_finite({"threshold": 1, "document": {"x": [0.5]}}) is None
    True
    """
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return (
            path or "body",
            "must be a finite number (NaN, Infinity and numbers out of the float range, such as 1e999, are "
            f"refused), got {value}",
        )
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = find_non_finite(
            item, f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
        )
        if found:
            return found
    return None


def _storable(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise _problem(problem)
    return value


# A string that goes into the database.
Text = Annotated[str, AfterValidator(_storable)]

# Checked by the same code as the tags, so a value accepted here is accepted by the registry hook.
Address = Annotated[
    str,
    _checked(to_checksum_address),
    _schema(
        ADDRESS_PATTERN,
        description="Ethereum address, any case (mixed case must be EIP-55).",
        examples=[EXAMPLE_ADDRESS],
    ),
]
Project = Annotated[str, _checked(T.check_project), _schema(PROJECT_PATTERN, examples=["churn"])]
BaselineId = Annotated[
    str,
    _checked(lambda value: T.parse_model_id(value) and value),
    AfterValidator(_storable),
    _schema(MODEL_ID_PATTERN, examples=["churn/1"]),
]


class _Request(BaseModel):
    # Strict: "1" is not a threshold and 5 is not a name; unknown fields are typos, refused.
    model_config = ConfigDict(extra="forbid", strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- errors ---------------------------------------------------------------------------------------


class ErrorResponse(_Response):
    """MLflow's error shape, used by every Hokusai route."""

    error_code: str = Field(
        description="MLflow error code: INVALID_PARAMETER_VALUE (400), RESOURCE_DOES_NOT_EXIST (404), "
        "RESOURCE_CONFLICT (409), ...",
        examples=["INVALID_PARAMETER_VALUE"],
    )
    message: str = Field(
        description='For a validation error: "<field>: <what is wrong>".',
        examples=["contributors[0].address: is the zero address; anything sent to it is lost"],
    )


# -- health ---------------------------------------------------------------------------------------


class HealthLiveResponse(_Response):
    status: Literal["ok"]


class ReadinessCheck(_Response):
    ok: bool
    error: str | None = Field(None, description="Exception class name of a failing check.")
    detail: str | None = None
    address: str | None = Field(None, description="attester_key: the attester's address.")
    ephemeral: bool | None = Field(None, description="attester_key: a dev-mode key lost at restart.")


class HealthReadyResponse(_Response):
    status: Literal["ready", "not_ready"]
    checks: dict[str, ReadinessCheck] = Field(
        description="database, attester_key and artifact_store, each with ok."
    )
    warning: str | None = Field(None, description="Present in dev mode (ephemeral attester key).")
    message: str | None = Field(None, description="Present when not ready: the failing checks.")


# -- attestations ---------------------------------------------------------------------------------


class DsseSignature(_Response):
    keyid: str = Field(description="The attester's address: a hint only, verification ignores it.")
    sig: str = Field(description="base64 of the 65-byte r||s||v EIP-191 signature of the DSSE PAE.")


class DsseEnvelope(_Response):
    payloadType: str = Field(examples=["application/vnd.in-toto+json"])
    payload: str = Field(description="base64 of the canonical in-toto Statement v1.")
    signatures: list[DsseSignature]


class Eip712Part(_Response):
    typed_data: dict[str, Any] = Field(
        description="The DeltaVerifier MintRequest: types, primaryType, domain, message."
    )
    signatures: list[str] = Field(
        description="0x-hex 65-byte signatures of the typed data, in ascending signer address order."
    )
    signed_at: str | None = Field(None, description="ISO 8601 UTC time of this signing.")
    expired: bool | None = Field(
        None,
        description="Added when served: whether the message's deadline has passed (renew it with "
        "POST /attestations/{attestation_id}/renew).",
    )
    history: list[dict[str, Any]] | None = Field(
        None, description="Earlier signings ({typed_data, signatures, signed_at}), oldest first."
    )


class AttestationDocument(_Response):
    """The attestation document of contract.md; only ``dsse`` and ``eip712`` are signed."""

    id: str = Field(description="sha256 hex of the DSSE payload bytes.")
    model_id: str = Field(description="The improved model, <name>/<version>.")
    baseline_model_id: str
    attester: str = Field(description="The attester's EIP-55 address.", examples=[EXAMPLE_ADDRESS])
    status: AttestationStatus
    created_at: str = Field(description="ISO 8601 UTC time of signing.")
    dsse: DsseEnvelope
    eip712: Eip712Part | None = Field(None, description="Only for a model with an on-chain id.")
    eip712_omitted: str | None = Field(
        None, description="Why an on-chain model's improvement has no EIP-712 MintRequest."
    )


class AttestationListResponse(_Response):
    attestations: list[AttestationDocument] = Field(description="Oldest first.")


class ListAttestationsQuery(_Request):
    model_id: str = Field(min_length=1, description="The model, <name>/<version>.", examples=["churn/2"])


class VerifyAttestationRequest(_Request):
    """Verify an attestation document (as ``GET /attestations/<id>`` serves it) or a bare DSSE envelope."""

    document: dict[str, Any] = Field(
        description="An attestation document (an object with dsse) or a bare DSSE envelope "
        "(payloadType, payload, signatures). A malformed one is answered with valid: false."
    )
    attesters: list[Address] | None = Field(
        None,
        max_length=100,
        description="Addresses whose signatures count. Omitted or null: this server's own attester. "
        "An empty list: any signer counts (the verdict then only says who signed).",
    )
    threshold: int = Field(
        1, ge=1, le=100, description="How many distinct listed attesters must have signed."
    )


class VerifyAttestationResponse(_Response):
    valid: bool
    signers: list[str] = Field(description="Distinct addresses recovered from the DSSE signatures, in order.")
    failed_check: str | None = Field(
        description="The first check that failed: document_shape, envelope_shape, payload_type, "
        "payload_encoding, statement_type, signature_format, signature_recovery, attesters, threshold, "
        "document_id or eip712; null when valid."
    )
    message: str
    attesters: list[str] = Field(
        description="The attesters the signatures were checked against (empty: any)."
    )
    threshold: int
    statement: dict[str, Any] | None = Field(
        description="The decoded in-toto Statement when it could be decoded; trust it only when valid."
    )
    eip712: dict[str, Any] | None = Field(
        None,
        description="The checked MintRequest: types (current or legacy), deadline, expired, "
        "idempotency_key, baseline_commitment, candidate_commitment, signers.",
    )


# -- lineage --------------------------------------------------------------------------------------


class MetricDelta(_Response):
    baseline_value: float
    new_value: float
    absolute_delta: float
    relative_delta: float | None = Field(description="null when the baseline value is 0.")
    improvement: bool
    direction: str = Field(examples=["higher"])


class LineageEdge(_Response):
    child_model_id: str
    parent_model_id: str
    project: str
    model_type: str
    benchmark_metric: str
    baseline_score_bps: int
    candidate_score_bps: int
    delta_one_bps: int
    metric_deltas: dict[str, MetricDelta]
    attestation_id: str | None
    created_at: int = Field(description="Epoch milliseconds.")
    depth: int = Field(description="Negative upstream (-1: the model's own edge), positive downstream.")
    cumulative_delta_one_bps: int = Field(description="DeltaOne summed from the root down to this edge.")


class LineageNode(_Response):
    model_id: str
    depth: int


class LineageGraph(_Response):
    model_id: str
    direction: Literal["both", "upstream", "downstream"]
    root: str | None = Field(description="The root baseline; null for a bare registered-model name.")
    cumulative_delta_one_bps: int
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    # Only on a damaged lineage (a table edited by hand): the versions on a cycle, and whether the
    # walk stopped at its depth bound.
    cycle: list[str] | None = Field(
        None, exclude_if=lambda value: value is None, description="Versions on a lineage cycle."
    )
    truncated: bool | None = Field(
        None, exclude_if=lambda value: value is None, description="True: the walk stopped at its bound."
    )


assert tuple(LineageGraph.model_fields["direction"].annotation.__args__) == LINEAGE_DIRECTIONS


class LineageQuery(_Request):
    direction: Literal["both", "upstream", "downstream"] = Field(
        "both", description="upstream: baselines to the root; downstream: successors; both."
    )
    max_depth: int | None = Field(None, ge=1, le=100_000, description="At most this many hops.")


# -- contributors ---------------------------------------------------------------------------------


class Contribution(_Response):
    address: str
    model_id: str
    project: str
    weight_bps: int
    samples: int | None
    attributed_bps: int
    attestation_id: str | None
    created_at: int = Field(description="Epoch milliseconds.")


class ProjectImpact(_Response):
    models_improved: int
    attributed_bps: int


class ContributorImpactResponse(_Response):
    address: str = Field(description="EIP-55 checksummed.")
    total_models_improved: int
    total_attributed_bps: int
    projects: dict[str, ProjectImpact]
    first_contribution: int | None = Field(description="Epoch milliseconds.")
    last_contribution: int | None = Field(description="Epoch milliseconds.")
    contributions: list[Contribution] = Field(description="One page, oldest first.")
    next_page_token: str | None = Field(None, description="Present when there are more contributions.")


class ContributorImpactQuery(_Request):
    max_results: int = Field(100, ge=1, le=1000, description="Contributions per page.")
    page_token: str | None = Field(None, description="next_page_token of the previous page.")


# -- registration ---------------------------------------------------------------------------------


def _contributor_schema(schema: dict[str, Any]) -> None:
    # Absent, not null: a weight, a sample count, or both (the weight splits, the count is stated).
    schema["properties"]["weight_bps"] = {"type": "integer", "minimum": 1, "maximum": TOTAL_BPS}
    schema["properties"]["samples"] = {"type": "integer", "minimum": 1, "maximum": SAMPLES_MAX}
    schema["anyOf"] = [{"required": ["weight_bps"]}, {"required": ["samples"]}]


class ContributorEntry(_Request):
    """One contributor: a weight in basis points, or a sample count (weights are then derived), or
    a weight with the contributed rows it stands for (the MintRequest's ``totalSamples``)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_contributor_schema)

    address: Address
    weight_bps: int | None = Field(None, ge=1, le=TOTAL_BPS)
    samples: int | None = Field(None, ge=1, le=SAMPLES_MAX, description="Stored as a 64-bit integer.")

    @field_validator("weight_bps", "samples", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise _problem("must be a whole number, got null (leave it out instead)")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> ContributorEntry:
        if self.weight_bps is None and self.samples is None:
            raise _problem("give weight_bps, samples, or both")
        return self

    def tag_entry(self) -> dict:
        return {
            "address": self.address,
            **{
                key: getattr(self, key) for key in ("weight_bps", "samples") if getattr(self, key) is not None
            },
        }


class RegisterModelRequest(_Request):
    """Register a model version: a baseline (``baseline`` null) or an improvement of one."""

    name: Text = Field(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        json_schema_extra={"pattern": r"^[^/\x00]+$"},
        description="Registered model name (created when missing).",
    )
    model_uri: Text = Field(
        min_length=1,
        max_length=1000,
        description=f"The model: {MODEL_URI_FORMS}.",
        examples=["runs:/0123456789abcdef0123456789abcdef/model", "models:/churn/1", "models:/m-0123abcd"],
        json_schema_extra={"pattern": MODEL_URI_PATTERN},
    )
    project: Project = Field(
        description="Hokusai project; the registered model's hokusai.project tag (set when missing) must "
        "match it."
    )
    model_type: ModelType
    baseline: BaselineId | None = Field(
        None,
        description="The baseline this version improves, <name>/<version>; null (or absent) for a baseline.",
    )
    benchmark_metric: Text = Field(
        min_length=1,
        json_schema_extra={"pattern": TEXT_PATTERN},
        max_length=MAX_METRIC_LENGTH,
        description="The benchmark metric; the source run (and, for an improvement, the baseline's) must "
        "have logged it.",
        examples=["accuracy"],
    )
    contributors: list[ContributorEntry] | None = Field(
        None,
        min_length=1,
        max_length=MAX_CONTRIBUTORS,
        description="As in the hokusai.contributors tag; required if and only if baseline is given. "
        f"weight_bps must sum to {TOTAL_BPS}; all entries use the same form.",
    )
    pipeline_run_id: Text | None = Field(
        None, min_length=1, max_length=PIPELINE_RUN_ID_LENGTH, json_schema_extra={"pattern": TEXT_PATTERN}
    )
    description: Text | None = Field(
        None,
        max_length=MLFLOW_DESCRIPTION_LENGTH,
        json_schema_extra={"pattern": TEXT_PATTERN},
        description="MLflow keeps at most 5000 characters; the server's summary below it is shortened "
        "to fit (the attestation document has every detail).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if "/" in value:
            raise _problem("must not contain '/' (model ids are <name>/<version>)")
        if not value.strip() or not value.isprintable():
            raise _problem("must be printable and not blank")
        return value

    @field_validator("model_uri")
    @classmethod
    def _model_uri(cls, value: str) -> str:
        if not any(form.fullmatch(value) for form in (RUNS_URI, LOGGED_MODEL_URI, VERSION_URI)):
            raise _problem(f"{value[:80]!r} is not a model URI; expected {MODEL_URI_FORMS}")
        return value

    @model_validator(mode="after")
    def _contributors_iff_baseline(self) -> RegisterModelRequest:
        if self.baseline is not None and self.contributors is None:
            raise ValidationError("contributors", "is required when baseline is given")
        if self.baseline is None and self.contributors is not None:
            raise ValidationError("contributors", "only an improvement (with a baseline) has contributors")
        if self.contributors is not None:
            # Sums, duplicates and mixed forms: the same rules as the tag and the DeltaVerifier.
            parse_contributors([entry.tag_entry() for entry in self.contributors])
        return self

    def contributors_tag(self) -> list[dict] | None:
        return None if self.contributors is None else [entry.tag_entry() for entry in self.contributors]


class ModelVersionInfo(_Response):
    name: str
    version: str
    source: str
    run_id: str | None
    model_id: str | None = Field(description="The MLflow 3 logged model (m-...), if any.")
    status: str | None
    description: str | None
    creation_timestamp: int | None
    last_updated_timestamp: int | None
    tags: dict[str, str]
    aliases: list[str]


class RegisterModelResponse(_Response):
    model_id: str = Field(description="<name>/<version>.", examples=["churn/2"])
    model_version: ModelVersionInfo
    lineage: LineageGraph = Field(
        description="The upstream lineage, as GET /models/<id>/lineage?direction=upstream."
    )
    deltas: dict[str, MetricDelta] | None = Field(description="Per metric; null for a baseline.")
    delta_one_bps: int | None = Field(description="null for a baseline.")
    attestation_id: str | None
    attestation_status: AttestationStatus | None = Field(
        description="not_applicable for a baseline; signed once attested; pending or failed otherwise."
    )


IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]{1,128}$"


# -- projects -------------------------------------------------------------------------------------


class ProjectModel(_Response):
    name: str
    latest_version: int | None = Field(description="Highest version number; null with no versions.")
    versions: int = Field(description="Number of versions.")


class ProjectSummary(_Response):
    project: str
    registered_models: list[ProjectModel]
    improvements: int = Field(description="Attested improvements (lineage edges).")
    delta_one_bps: int = Field(description="Total DeltaOne of the attested improvements.")
    last_improvement_timestamp: int | None = Field(description="Epoch milliseconds; null with none.")


class ProjectsResponse(_Response):
    projects: list[ProjectSummary] = Field(description="Sorted by project name.")


# -- API keys (admin) -----------------------------------------------------------------------------


class ApiKeyRecord(_Response):
    id: int
    name: str
    prefix: str = Field(description="The first characters of the key: enough to recognise it, not to use it.")
    role: Literal["read", "write", "admin"]
    project: str | None = Field(description="The only project the key may touch; null: every project.")
    created_at: int = Field(description="Epoch milliseconds.")
    revoked_at: int | None = Field(description="Epoch milliseconds; null while the key is live.")


class ApiKeyListResponse(_Response):
    keys: list[ApiKeyRecord]


class CreateApiKeyRequest(BaseModel):
    """A new API key (validated by the key store; other fields are ignored)."""

    name: str = Field(min_length=1, max_length=256, pattern=r"\S", description="Who or what the key is for.")
    role: Literal["read", "write", "admin"]
    project: Project | None = Field(None, description="Limit the key to one project.")


class CreateApiKeyResponse(_Response):
    key: str = Field(description="The key itself: shown this once, only its hash is stored.")
    record: ApiKeyRecord


class ApiKeyRecordResponse(_Response):
    record: ApiKeyRecord


# -- validation -----------------------------------------------------------------------------------


def validate(model: type[BaseModel], data: Any, *, strict: bool | None = None) -> Any:
    """``model`` validated from ``data``; the first problem raises a field-naming ValidationError.

    ``strict=False`` reads numbers from text, for query strings; bodies keep the model's strictness.
    """
    try:
        return model.model_validate(data, strict=strict)
    except pydantic.ValidationError as exc:
        raise first_error(exc) from None


def first_error(exc: pydantic.ValidationError) -> ValidationError:
    error = exc.errors(include_url=False)[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ValidationError):
        return cause
    field = field_path(error["loc"])
    kind = error["type"]
    if kind == "missing":
        return ValidationError(field, "is required")
    if kind == "extra_forbidden":
        return ValidationError(field, "is not a known field")
    if not error["loc"]:
        return ValidationError("body", "must be a JSON object")
    message = error["msg"]
    return ValidationError(field, message[:1].lower() + message[1:])


def field_path(loc: tuple) -> str:
    """``("contributors", 0, "address")`` -> ``"contributors[0].address"``.

    >>> field_path(("contributors", 0, "address"))
    'contributors[0].address'
    """
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or "body"
