"""What the database can hold, declared once: the bounds a registration is checked against
before anything is written.

A value that passes validation but does not fit its column fails only when it is written, after
MLflow has already written the version: the version would stay ``pending`` with some records
written. So every value the registration stores is checked against these bounds up front, and
``db/models.py`` declares its columns with the same constants, so a value that passes a check
always fits. Pure: no SQLAlchemy here (``core`` does no I/O).

MLflow's own limits are here too, for what the plugin writes into MLflow's tables (MLflow 3.17,
``mlflow/store/model_registry/dbmodels/models.py`` and ``mlflow/utils/validation.py``).
"""

from __future__ import annotations

# -- SQL integer types (the same on PostgreSQL, SQLite and MySQL) --------------------------------

INTEGER_MAX = 2**31 - 1
BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1

# -- MLflow's columns ------------------------------------------------------------------------------

# registered_models.name and model_versions.name: String(256).
MLFLOW_MODEL_NAME_LENGTH = 256
# model_versions.version: Integer.
MLFLOW_MODEL_VERSION_MAX = INTEGER_MAX
# model_versions.description: String(5000). MLflow checks no length before writing it (there is no
# MAX_*_DESCRIPTION_LENGTH in mlflow/utils/validation.py): a longer one fails in the database.
MLFLOW_DESCRIPTION_LENGTH = 5000
# The longest value the server writes into a tag of its own (MLflow's own limit is higher).
SERVER_TAG_VALUE_LENGTH = 1000
# metrics.key and latest_metrics.key: String(250), MAX_ENTITY_KEY_LENGTH in mlflow/utils/validation.py.
MLFLOW_METRIC_KEY_LENGTH = 250

# -- the plugin's columns (db/models.py) -------------------------------------------------------------

# A Hokusai model id "<registered model name>/<version>": child_model_id, parent_model_id, model_id
# and baseline_model_id columns.
MODEL_ID_LENGTH = 512
PROJECT_LENGTH = 64
MODEL_TYPE_LENGTH = 32
# hokusai_lineage_edges.benchmark_metric: an MLflow metric key.
BENCHMARK_METRIC_LENGTH = MLFLOW_METRIC_KEY_LENGTH
ADDRESS_LENGTH = 42  # "0x" + 40 hex digits
ATTESTATION_ID_LENGTH = 64  # sha256 hex
ATTESTATION_STATUS_LENGTH = 20
# hokusai_contributions.samples: BigInteger.
SAMPLES_MAX = BIGINT_MAX
# Basis points kept as BigInteger: the edges' baseline_score_bps, candidate_score_bps and
# delta_one_bps, the contributions' attributed_bps and the contributor totals' attributed_bps.
SCORE_BPS_MIN = BIGINT_MIN
SCORE_BPS_MAX = BIGINT_MAX

# Not a column of its own: the pipeline run id is kept in the attestation document (and signed in
# the EIP-712 MintRequest). The bound the REST route always had, applied to the tag as well, so the
# two ways to register accept the same values.
PIPELINE_RUN_ID_LENGTH = 250

# The longest model id MLflow can give (its longest name, "/", its largest version) fits the column.
assert MLFLOW_MODEL_NAME_LENGTH + 1 + len(str(MLFLOW_MODEL_VERSION_MAX)) <= MODEL_ID_LENGTH


def column_type(maximum: int) -> str:
    """The SQL type a bound is the maximum of, for messages.

    >>> column_type(BIGINT_MAX), column_type(INTEGER_MAX)
    ('64-bit integer', '32-bit integer')
    """
    return {BIGINT_MAX: "64-bit integer", INTEGER_MAX: "32-bit integer"}.get(maximum, "integer")


def fits_bigint(value: int) -> bool:
    """Whether an integer fits a BIGINT column.

    >>> fits_bigint(2**63 - 1), fits_bigint(2**63), fits_bigint(-(2**63))
    (True, False, True)
    """
    return BIGINT_MIN <= value <= BIGINT_MAX


def length_problem(value: str, maximum: int) -> str | None:
    """Why ``value`` does not fit a column of ``maximum`` characters, or None.

    >>> length_problem("a" * 251, 250)
    'has 251 characters; at most 250 can be stored'
    """
    if len(value) > maximum:
        return f"has {len(value)} characters; at most {maximum} can be stored"
    return None
