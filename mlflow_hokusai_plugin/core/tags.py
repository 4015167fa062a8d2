"""The ``hokusai.*`` tag names of the external contract, and checks of their plain values.

Clients write the first group on model versions (a plain MLflow client is enough); the server (or,
before the server plugin, the services) writes the second. Names here are the contract: change
them only by adding.
"""

from __future__ import annotations

import re

from mlflow_hokusai_plugin.core.errors import ValidationError

# Written by clients on a model version (``PROJECT`` also on the registered model).
PROJECT = "hokusai.project"
MODEL_TYPE = "hokusai.model_type"
BASELINE = "hokusai.baseline"
BENCHMARK_METRIC = "hokusai.benchmark.metric"
CONTRIBUTORS = "hokusai.contributors"
PIPELINE_RUN_ID = "hokusai.pipeline_run_id"

# On the source run of a version: sha256 hex of the benchmark data.
BENCHMARK_DATASET_DIGEST = "hokusai.benchmark.dataset_digest"
# MLflow dataset-input context that may carry the digest instead of the run tag.
BENCHMARK_INPUT_CONTEXT = "benchmark"

# On the registered model: enables the EIP-712 MintRequest.
ONCHAIN_MODEL_ID = "hokusai.onchain_model_id"

# Written by the server (or by the services when they sign locally).
DELTA_ONE_BPS = "hokusai.delta_one_bps"
ATTESTATION_ID = "hokusai.attestation.id"
ATTESTATION_STATUS = "hokusai.attestation.status"
ATTESTER = "hokusai.attester"
# The sha256 of the version's artifact manifest, written when the version is registered: the
# weight commitment of the MintRequest (a baseline's is its model's on-chain genesis).
ARTIFACT_DIGEST = "hokusai.artifact_digest"
# On an improved version of an on-chain model: "signed", or "omitted: <why there is no MintRequest>".
ATTESTATION_EIP712 = "hokusai.attestation.eip712"
EIP712_SIGNED = "signed"

STATUS_PENDING = "pending"
STATUS_SIGNED = "signed"
STATUS_FAILED = "failed"
STATUS_NOT_APPLICABLE = "not_applicable"

MODEL_TYPES = ("lead_scoring", "classification", "regression", "ranking")

_PROJECT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def check_project(value: object, field: str = "project") -> str:
    """A project name: lower-case letters, digits, ``_`` and ``-``, at most 64 characters.

    >>> check_project("lead-scoring_v2")
    'lead-scoring_v2'
    """
    if not isinstance(value, str) or not _PROJECT_RE.fullmatch(value):
        raise ValidationError(
            field,
            f"{value!r} is not a project name: use 1-64 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit",
        )
    return value


def check_model_type(value: object, field: str = "model_type") -> str:
    """One of :data:`MODEL_TYPES`.

    >>> check_model_type("ranking")
    'ranking'
    """
    if value not in MODEL_TYPES:
        raise ValidationError(
            field,
            f"{value!r} is not a model type; expected one of {', '.join(MODEL_TYPES)}",
        )
    return value  # type: ignore[return-value]


def parse_model_id(value: object, field: str = "model_id") -> tuple[str, int]:
    """Split a Hokusai model id ``"<registered model name>/<version>"``.

    MLflow forbids ``/`` in registered model names, so the split is unambiguous.

    >>> parse_model_id("churn/3")
    ('churn', 3)
    """
    if not isinstance(value, str) or value.count("/") != 1:
        raise ValidationError(
            field,
            f"{value!r} is not a model id; expected '<registered model name>/<version>'",
        )
    name, version = value.split("/")
    # One spelling per version: "churn/01" would name churn/1 but never match its records.
    if (
        not name.strip()
        or not (version.isascii() and version.isdigit())
        or int(version) < 1
        or version != str(int(version))
    ):
        raise ValidationError(
            field,
            f"{value!r} is not a model id; expected '<registered model name>/<version>'",
        )
    return name, int(version)


def check_onchain_model_id(value: object, field: str = ONCHAIN_MODEL_ID) -> int:
    """A DeltaVerifier model id: a decimal uint256, as the contract takes it.

    >>> check_onchain_model_id("42")
    42
    """
    # isascii(): "²" and "①" are digits to str.isdigit() but not to int().
    if (
        not isinstance(value, str)
        or not (value.isascii() and value.isdigit())
        or len(value) > 78
        or value != str(int(value))
    ):
        raise ValidationError(
            field, f"{str(value)[:80]!r} is not a decimal uint256 (digits, no leading zero)"
        )
    number = int(value)
    if number >= 2**256:
        raise ValidationError(field, "is larger than a uint256")
    return number


def format_model_id(name: str, version: int | str) -> str:
    """The inverse of :func:`parse_model_id`.

    >>> format_model_id("churn", 3)
    'churn/3'
    """
    return f"{name}/{version}"


CLIENT_TAGS = (PROJECT, MODEL_TYPE, BASELINE, BENCHMARK_METRIC, CONTRIBUTORS, PIPELINE_RUN_ID)
SERVER_TAGS = (
    DELTA_ONE_BPS,
    ATTESTATION_ID,
    ATTESTATION_STATUS,
    ATTESTER,
    ARTIFACT_DIGEST,
    ATTESTATION_EIP712,
)

# -- tag keys: which level each belongs to, and look-alike spellings ---------------------------

# The ``hokusai.`` namespace is the plugin's: on model versions and registered models a client may
# write exactly these keys of it, spelled exactly so (``SERVER_TAGS`` only the server writes).
NAMESPACE = "hokusai."
VERSION_CLIENT_TAGS = CLIENT_TAGS
MODEL_CLIENT_TAGS = (PROJECT, ONCHAIN_MODEL_ID)
# On the source run, never on a model version or registered model.
RUN_TAGS = (BENCHMARK_DATASET_DIGEST,)
HOKUSAI_TAGS = (*CLIENT_TAGS, *SERVER_TAGS, ONCHAIN_MODEL_ID, *RUN_TAGS)

# Letters of other scripts (and Latin variants NFKC keeps) that render like the Latin letters of
# our keys; folded to them so that e.g. a Cyrillic "о" in "hоkusai.baseline" is still ours.
_LOOKALIKES = str.maketrans(
    {
        **dict(zip("аеһіјкорсѕтухԁԛԝӏ", "aehijkopcstyxdqwl", strict=True)),  # Cyrillic
        **dict(zip("αεικνορτυχ", "aeikvoptux", strict=True)),  # Greek
        **dict(zip("ıȷɡɑʟ", "ijgal", strict=True)),  # Latin variants: dotless i/j, script g, alpha, small L
    }
)


def canonical_tag_key(key: str) -> str:
    """The form two keys that render alike share: NFKC, case folded, Unicode look-alikes of Latin
    letters and accents folded, whitespace and invisible format characters removed.

    ``canonical_tag_key(k) == canonical_tag_key(ours)`` while ``k != ours`` means a look-alike
    spelling of one of our keys (upper case, a trailing space, fullwidth letters, Cyrillic ``о``).

    >>> canonical_tag_key(" Hokusai.Attestation.Status ")
    'hokusai.attestation.status'
    >>> canonical_tag_key("\\uff48okusai.baseline")  # fullwidth h
    'hokusai.baseline'
    >>> canonical_tag_key("team")
    'team'
    """
    import unicodedata

    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", key).casefold())
    decomposed = unicodedata.normalize("NFKD", folded.translate(_LOOKALIKES))
    return "".join(
        char
        for char in decomposed
        if not char.isspace() and unicodedata.category(char) not in ("Mn", "Me", "Cf", "Cc")
    ).translate(_LOOKALIKES)


_CANONICAL_HOKUSAI_TAGS = {canonical_tag_key(key): key for key in HOKUSAI_TAGS}


def hokusai_key_of(key: str) -> str | None:
    """The key of ours that ``key`` spells, exactly or as a look-alike; None for keys outside it.

    >>> hokusai_key_of("HOKUSAI.PROJECT"), hokusai_key_of("team")
    ('hokusai.project', None)
    """
    return _CANONICAL_HOKUSAI_TAGS.get(canonical_tag_key(key))


def in_namespace(key: str) -> bool:
    """Whether ``key`` is, or looks like, a key of the ``hokusai.`` namespace.

    >>> in_namespace("Hokusai.anything"), in_namespace("hokusai_notes")
    (True, False)
    """
    canonical = canonical_tag_key(key)
    return canonical.startswith(NAMESPACE) or canonical == NAMESPACE.rstrip(".")


def parse_improvement_tags(tags: dict[str, str]) -> dict:
    """Validate the client-written tags of an improved version (one carrying ``hokusai.baseline``).

    Returns ``project``, ``model_type``, ``baseline`` (the model id), ``baseline_name``,
    ``baseline_version``, ``benchmark_metric``, ``contributors`` (normalised, see
    ``core.contributors.parse_contributors``) and ``pipeline_run_id`` (or None). Each problem
    raises a ValidationError whose field is the tag name.

    Every value is also one the registry can store (``core.storage_bounds``): no NUL character,
    a benchmark metric and a pipeline run id within their lengths, sample counts within 64 bits.
    A value that passed here and then failed in the database would leave the version pending.
    """
    from mlflow_hokusai_plugin.core import storage_bounds as bounds
    from mlflow_hokusai_plugin.core.contributors import parse_contributors

    for required in (PROJECT, MODEL_TYPE, BASELINE, BENCHMARK_METRIC, CONTRIBUTORS):
        if not tags.get(required):
            raise ValidationError(required, "is required on a version that names a baseline")
    for key in CLIENT_TAGS:
        if "\x00" in str(tags.get(key) or ""):
            raise ValidationError(
                key, "must not contain NUL (U+0000) characters: the database cannot store them"
            )
    baseline_name, baseline_version = parse_model_id(tags[BASELINE], BASELINE)
    if (
        len(baseline_name) > bounds.MLFLOW_MODEL_NAME_LENGTH
        or baseline_version > bounds.MLFLOW_MODEL_VERSION_MAX
    ):
        raise ValidationError(
            BASELINE,
            f"names no model version MLflow can hold (registered model names have at most "
            f"{bounds.MLFLOW_MODEL_NAME_LENGTH} characters, versions go up to "
            f"{bounds.MLFLOW_MODEL_VERSION_MAX})",
        )
    metric = tags[BENCHMARK_METRIC]
    problem = bounds.length_problem(metric, bounds.BENCHMARK_METRIC_LENGTH)
    if problem:
        raise ValidationError(BENCHMARK_METRIC, f"{problem} (an MLflow metric key)")
    pipeline_run_id = tags.get(PIPELINE_RUN_ID) or None
    problem = pipeline_run_id and bounds.length_problem(pipeline_run_id, bounds.PIPELINE_RUN_ID_LENGTH)
    if problem:
        raise ValidationError(PIPELINE_RUN_ID, problem)
    try:
        contributors = parse_contributors(tags[CONTRIBUTORS])
    except ValidationError as exc:
        raise ValidationError(CONTRIBUTORS + exc.field[len("contributors") :], exc.message) from None
    return {
        "project": check_project(tags[PROJECT], PROJECT),
        "model_type": check_model_type(tags[MODEL_TYPE], MODEL_TYPE),
        "baseline": tags[BASELINE],
        "baseline_name": baseline_name,
        "baseline_version": baseline_version,
        "benchmark_metric": metric,
        "contributors": contributors,
        "pipeline_run_id": pipeline_run_id,
    }
