"""The ``start`` step's work: check every parameter and load the benchmark and training rows.

Everything that can be wrong with the parameters is found here, before a model is trained or a
run is written, so a typo costs seconds, not a half-finished pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.pipeline import contributed_data, contributions, training
from mlflow_hokusai_plugin.runtime.uris import redact_uri
from mlflow_hokusai_plugin.services.datasets import dataframe_digest

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1_score", "auroc")
REGRESSION_METRICS = ("rmse", "mae", "mse")
SAMPLE_MODEL_NAME = "hokusai-sample-{model_type}"
SAMPLE_DIR = "sample"  # under the run's output folder: the sample's files, as a user would bring them


@dataclass
class Setup:
    """What ``start`` hands to the other steps."""

    settings: dict  # resolved parameters: model_name, benchmark_metric, project, run_dir, pipeline_run_id
    benchmark: Any
    training: Any  # DataFrame or None
    benchmark_digest: str
    summary: str


def prepare(params: Mapping[str, Any], flow_name: str, run_id: str) -> Setup:
    """Resolve and check the flow's parameters (``params`` maps parameter names to values)."""
    model_type = training.check_supported(T.check_model_type(params["model_type"], "model_type"))
    project = T.check_project(params["project"] or "default", "project")
    services = not params["disable_services"]
    if services and not params["tracking_uri"]:
        raise ValidationError(
            "tracking_uri",
            "no MLflow server: set MLFLOW_TRACKING_URI or --tracking-uri, or run with --disable-services",
        )
    label = params["label_column"]
    metric = params["benchmark_metric"] or training.default_benchmark_metric(model_type)
    known = REGRESSION_METRICS if model_type == training.REGRESSION else CLASSIFICATION_METRICS
    if metric not in known:
        raise ValidationError(
            "benchmark_metric", f"'{metric}' is not one of {', '.join(known)} for {model_type}"
        )
    run_dir = output_run_dir(params["output_dir"], run_id)
    _check_contributions(params, run_dir)
    if services:
        check_tracking_server(params["tracking_uri"])

    benchmark, train_rows = _load_data(params, model_type, label)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValidationError("output_dir", f"{run_dir} cannot be created ({exc.strerror})") from None
    if train_rows is None:
        print(
            "Warning: no --training-data: the new model is trained on the contributed rows alone, so it "
            "is compared with a baseline that saw other data"
        )
    model_name = params["model_name"] or (
        SAMPLE_MODEL_NAME.format(model_type=model_type) if params["sample"] else f"hokusai_{model_type}"
    )
    settings = {
        "model_name": model_name,
        "benchmark_metric": metric,
        "project": project,
        "output_dir": str(Path(params["output_dir"] or ".").resolve()),
        "pipeline_run_id": f"metaflow:{flow_name}/{run_id}",
        "services": services,
    }
    given = params["benchmark_data"]
    source = "the bundled sample" if params["sample"] and not given else given
    summary = (
        f"{model_type} model '{model_name}' in project '{project}', benchmark {source} "
        f"({len(benchmark)} rows, {metric}), "
        + ("MLflow at " + redact_uri(params["tracking_uri"]) if services else "services disabled")
        + ("; dry run: nothing is written to MLflow" if params["dry_run"] else "")
    )
    return Setup(settings, benchmark, train_rows, dataframe_digest(benchmark), summary)


def output_run_dir(output_dir: str, run_id: str) -> Path:
    """``<output-dir>/<metaflow run id>/`` (a resumed run writes under its own new id)."""
    return Path(output_dir or ".").resolve() / str(run_id)


def check_tracking_server(tracking_uri: str) -> None:
    """The MLflow server answers; and someone can sign: a Hokusai server, or a key here."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from mlflow_hokusai_plugin.runtime.signer import Signer
    from mlflow_hokusai_plugin.services.hokusai_server import hokusai_app_client

    try:
        MlflowClient(tracking_uri).search_experiments(max_results=1)
    except (MlflowException, OSError) as exc:
        message = str(getattr(exc, "message", exc)).strip().splitlines()[0][:300]
        raise ValidationError(
            "tracking_uri", f"{redact_uri(tracking_uri)} does not answer: {message}"
        ) from None
    if hokusai_app_client(tracking_uri) is None:
        # A plain MLflow server: the services sign in this process, so the key must be here.
        Signer.from_env()


def _check_contributions(params: Mapping[str, Any], run_dir: Path) -> None:
    """Found now, before the baseline is registered: who contributed and that their files exist."""
    contributor, rows = params["contributor"], params["contributed_data"]
    supplied = contributions.sample_supplies(contributor, rows) if params["sample"] else None
    if supplied == contributions.SAMPLE_CONTRIBUTORS:
        return  # the sample's own contributors and files
    if supplied == contributions.SAMPLE_ROWS:
        # The sample's rows, which integrate_contributed_data writes there: only the contributor
        # is the user's to check.
        from mlflow_hokusai_plugin.pipeline.sample import contributed_rows_path

        rows = str(contributed_rows_path(run_dir / SAMPLE_DIR))
    plan = contributions.plan_contributions(contributor, rows)
    if supplied is None:
        for source in plan.sources:
            contributed_data.check_readable(source.path)


def _load_data(params: Mapping[str, Any], model_type: str, label: str) -> tuple[Any, Any]:
    """The benchmark and the training rows: from files, or from the bundled sample (``--sample``)."""
    sample = None
    if params["sample"]:
        from mlflow_hokusai_plugin.pipeline.sample import load_sample

        sample = load_sample()
    if params["benchmark_data"]:
        benchmark = contributed_data.read_table(params["benchmark_data"], "benchmark_data")
    elif sample is not None:
        benchmark = sample.benchmark
    else:
        raise ValidationError(
            "benchmark_data", "give the benchmark rows (or use --sample for the bundled sample)"
        )
    schema = contributed_data.BenchmarkSchema.of(benchmark, label, model_type, "benchmark_data")
    if params["training_data"]:
        rows = contributed_data.read_table(params["training_data"], "training_data")
        train_rows, _, _ = contributed_data.conform(rows, schema, params["training_data"], "training_data")
    elif sample is not None and not params["baseline_model"]:
        train_rows = sample.baseline  # the rows the sample baseline is trained on
    else:
        train_rows = None
    return benchmark, train_rows
