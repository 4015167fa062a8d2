"""``HokusaiEvaluationFlow``: measure a data contribution against the baseline and record it.

Run it with ``hokusai pipeline run ...`` or with Metaflow directly::

    python -m mlflow_hokusai_plugin.pipeline.flow run --sample --disable-services
    python -m mlflow_hokusai_plugin.pipeline.flow run \\
        --baseline-model churn/3 --benchmark-data bench.csv --training-data train.csv \\
        --contributed-data rows.csv --contributor 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed

Steps: start, load_baseline_model, register_baseline, integrate_contributed_data,
create_experiment, train_new_model, evaluate_on_benchmark, track_improvement, generate_output, end.
Each step is a few lines calling the pipeline modules; bad input stops the step it is found in
with one message naming the parameter, file, column or row. MLflow is reached through
``--tracking-uri`` (default: ``MLFLOW_TRACKING_URI``); its credentials come from the environment
(``MLFLOW_TRACKING_TOKEN``) and are never stored as flow artifacts.

``--sample`` fills in whatever data is not given from the bundled sample; ``--dry-run`` writes
nothing to MLflow (no run, no registered model, version, tag or attestation): it reads what it
needs, evaluates, and says what a real run would register or reuse. A rerun of one evaluation
(same baseline, rows in any order, contributors with their shares, benchmark and metric) reuses
the improvement registered the first time (its ``improvement_key``), once the server's attestation
of it shows the same contributors and benchmark, so the same rows are not credited twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from metaflow import FlowSpec, Parameter, current, step

from mlflow_hokusai_plugin.pipeline.model_types import model_type_help
from mlflow_hokusai_plugin.pipeline.step_errors import stops_on_bad_input


class HokusaiEvaluationFlow(FlowSpec):
    """Train on contributed data, measure against the baseline on the benchmark, attest the gain."""

    baseline_model = Parameter(
        "baseline-model",
        default="",
        help="Registered model id (name/version), MLflow model URI or local MLflow model directory.",
    )
    contributed_data = Parameter(
        "contributed-data", default="", help="Contributed rows: CSV, JSON, JSON Lines or Parquet."
    )
    contributor = Parameter(
        "contributor",
        default="",
        help="The contributor's address (0x...), or a contributors file (JSON or CSV) of several.",
    )
    model_type = Parameter("model-type", default="classification", help=model_type_help())
    output_dir = Parameter(
        "output-dir", default="hokusai-output", help="Where <run id>/ gets the output documents."
    )
    sample = Parameter(
        "sample",
        is_flag=True,
        default=False,
        help="Use the bundled sample (scikit-learn's breast-cancer data) for whatever is not given: "
        "benchmark, training rows, baseline, contributed rows (one --contributor gets them all).",
    )
    dry_run = Parameter(
        "dry-run",
        is_flag=True,
        default=False,
        help="Write nothing to MLflow: evaluate, compute the DeltaOne and say what would be registered.",
    )
    disable_services = Parameter(
        "disable-services",
        is_flag=True,
        default=False,
        help="No MLflow server: the same documents, without registry ids.",
    )
    benchmark_data = Parameter("benchmark-data", default="", help="The benchmark rows (with labels).")
    training_data = Parameter(
        "training-data", default="", help="Rows the baseline was trained on (the new model gets them too)."
    )
    label_column = Parameter("label-column", default="label", help="The label column's name.")
    benchmark_metric = Parameter(
        "benchmark-metric", default="", help="DeltaOne's metric (default: accuracy, or rmse)."
    )
    model_name = Parameter("model-name", default="", help="Registered model name of the baseline.")
    project = Parameter(
        "project", default=os.environ.get("HOKUSAI_PROJECT", "default"), help="Hokusai project."
    )
    experiment = Parameter("experiment", default="hokusai_pipeline", help="MLflow experiment.")
    tracking_uri = Parameter(
        "tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI", ""),
        help="MLflow tracking server (default: MLFLOW_TRACKING_URI).",
    )

    @step
    def start(self):
        """Check every parameter and load the benchmark before anything is trained or written."""
        from mlflow_hokusai_plugin.pipeline import settings

        with stops_on_bad_input():
            setup = settings.prepare(self._parameter_values(), current.flow_name, current.run_id)
        self.settings = setup.settings
        self.benchmark = setup.benchmark
        self.training = setup.training
        self.benchmark_digest = setup.benchmark_digest
        self.pipeline_run_id = setup.settings["pipeline_run_id"]
        print(f"Pipeline run {self.pipeline_run_id}: {setup.summary}")
        self.next(self.load_baseline_model)

    @step
    def load_baseline_model(self):
        from mlflow_hokusai_plugin.pipeline import baseline, sample

        if not self.disable_services:
            self._use_tracking_server()
        with stops_on_bad_input():
            if self.sample and not self.baseline_model:
                rows = sample.load_sample().baseline
                loaded = baseline.train_sample_baseline(rows, self.model_type, self.label_column)
            else:
                loaded = baseline.load_baseline(self.baseline_model, services=not self.disable_services)
        self.baseline = loaded.model
        self.baseline_source = loaded.source
        self.baseline_registered_id = loaded.registered_id
        print(f"Baseline loaded: {loaded.description}")
        self.next(self.register_baseline)

    @step
    def register_baseline(self):
        """Register the baseline in the MLflow registry, or find the version registered before."""
        from mlflow_hokusai_plugin.pipeline import registration, training

        metric = self.settings["benchmark_metric"]
        with stops_on_bad_input():
            if self.disable_services:
                metrics = training.evaluate(self.baseline, self.benchmark, self.label_column, self.model_type)
                record = {"model_id": None, "run_id": None, "metrics": metrics, "reused": False}
                print("Services disabled: the baseline is measured, not registered")
            elif self.baseline_registered_id:
                record = registration.check_registered_baseline(
                    self.tracking_uri,
                    self.baseline_registered_id,
                    self.benchmark_digest,
                    metric,
                    self.model_type,
                )
            else:
                record = registration.register_baseline(
                    self.baseline,
                    self.benchmark,
                    model_name=self.settings["model_name"],
                    model_type=self.model_type,
                    label_column=self.label_column,
                    benchmark_metric=metric,
                    project=self.settings["project"],
                    source=self.baseline_source,
                    experiment_name=self.experiment,
                    tracking_uri=self.tracking_uri,
                    dry_run=self.dry_run,
                )
        with stops_on_bad_input():
            training.require_metric(record["metrics"], metric, "the baseline")
        self.baseline_record = record
        self.baseline_id = record["model_id"]
        if self.baseline_id:
            print(f"Baseline {self.baseline_id} {'reused' if record['reused'] else 'registered'}")
        elif self.dry_run and not self.disable_services:
            print(
                f"Dry run: the baseline would be registered as a new version of "
                f"'{self.settings['model_name']}'"
            )
        self.next(self.integrate_contributed_data)

    @step
    def integrate_contributed_data(self):
        """Read the contributions, check them against the benchmark, clean them, write the manifest."""
        from mlflow_hokusai_plugin.pipeline import contributed_data, contributions, sample
        from mlflow_hokusai_plugin.pipeline.settings import SAMPLE_DIR

        with stops_on_bad_input():
            contributor, data = self.contributor, self.contributed_data
            supplied = contributions.sample_supplies(contributor, data) if self.sample else None
            if supplied == contributions.SAMPLE_CONTRIBUTORS:
                contributor = str(sample.write_contribution_files(self._run_dir() / SAMPLE_DIR))
            elif supplied == contributions.SAMPLE_ROWS:
                data = str(sample.write_contributed_rows(self._run_dir() / SAMPLE_DIR))
            plan = contributions.plan_contributions(contributor, data)
            schema = contributed_data.BenchmarkSchema.of(self.benchmark, self.label_column, self.model_type)
            integrated = contributed_data.integrate(
                plan.sources, schema, benchmark=self.benchmark, training=self.training
            )
            self.contributors = plan.contributors_for(integrated.rows_kept)
        self.contributed = integrated.frame
        self.data_manifest = integrated.manifest
        path = _write_json(self._run_dir(), "data_manifest", integrated.manifest)
        self.output_files = {"data_manifest": path}
        dropped = integrated.manifest["dropped"]
        print(
            f"Contributed data: {len(self.contributed)} rows kept, "
            f"sha256 {integrated.manifest['data_hash']}; "
            f"dropped {dropped['duplicate_rows']} duplicate, {dropped['training_rows']} training and "
            f"{dropped['benchmark_rows']} benchmark rows, PII columns {sorted(dropped['pii_columns'])}"
        )
        self.next(self.create_experiment)

    @step
    def create_experiment(self):
        """Open the candidate's MLflow run, recording the contribution and the baseline it tests;
        or, for an evaluation registered before, take up the run that registered it."""
        from mlflow_hokusai_plugin.pipeline import registration
        from mlflow_hokusai_plugin.services import ExperimentManager

        self.experiment_run_id = None
        self.improvement_key = None
        self.earlier_improvement = None
        if self.baseline_id:
            evaluation = {
                "baseline_id": self.baseline_id,
                "contributors": self.contributors,
                "benchmark_digest": self.benchmark_digest,
                "benchmark_metric": self.settings["benchmark_metric"],
            }
            with stops_on_bad_input():
                # The rows as a set: shuffled rows, or the files in another order, are the same.
                self.improvement_key = registration.improvement_key(
                    **evaluation, data_hash=registration.rows_digest(self.contributed)
                )
                # The key earlier versions of the pipeline gave it (the sha256 of the rows in file
                # order), so that an improvement they registered is not credited again either.
                earlier_key = registration.improvement_key(
                    **evaluation, data_hash=self.data_manifest["data_hash"]
                )
            if not self.disable_services:
                earlier = registration.find_improvement(
                    self.tracking_uri,
                    self.baseline_id,
                    [self.improvement_key, earlier_key],
                    contributors=self.contributors,
                    benchmark_digest=self.benchmark_digest,
                    benchmark_metric=self.settings["benchmark_metric"],
                )
                if earlier is not None:
                    # The same rows against the same baseline: credited once. Its run is this
                    # run's candidate; nothing new is logged.
                    self.earlier_improvement = earlier["model_id"]
                    self.experiment_run_id = earlier["run_id"]
                    print(
                        f"This evaluation was registered before as {earlier['model_id']} "
                        f"(improvement key {self.improvement_key}): reusing it"
                    )
        if self.dry_run and not self.earlier_improvement:
            print("Dry run: no MLflow run is opened")
        if not (self.disable_services or self.dry_run or self.earlier_improvement):
            with stops_on_bad_input():
                manager = ExperimentManager(self.experiment, tracking_uri=self.tracking_uri)
                self.experiment_run_id = manager.create_improvement_experiment(
                    self.baseline_id, self.contributed
                )
                # The pipeline's manifest (sources, what was dropped) replaces the bare one.
                manager.client.log_dict(
                    self.experiment_run_id, self.data_manifest, "hokusai/data_manifest.json"
                )
            print(f"MLflow run {self.experiment_run_id} in experiment '{self.experiment}'")
        self.next(self.train_new_model)

    @step
    def train_new_model(self):
        """The baseline's estimator, refitted on the training rows plus the contribution."""
        import pandas as pd

        from mlflow_hokusai_plugin.pipeline import registration, training

        rows = pd.concat([f for f in (self.training, self.contributed) if f is not None], ignore_index=True)
        with stops_on_bad_input():
            self.new_model = training.fit(self.baseline, rows, self.label_column)
        self.total_samples = len(rows)
        self.new_model_uri = None
        if self._logs_candidate():
            self.new_model_uri = registration.log_candidate_model(
                self.experiment_run_id, self.new_model, rows, self.label_column, self.tracking_uri
            )
        print(f"New model trained on {len(rows)} rows ({len(self.contributed)} contributed)")
        self.next(self.evaluate_on_benchmark)

    @step
    def evaluate_on_benchmark(self):
        from mlflow_hokusai_plugin.pipeline import registration, training

        with stops_on_bad_input():
            self.new_metrics = training.evaluate(
                self.new_model, self.benchmark, self.label_column, self.model_type
            )
            training.require_metric(self.new_metrics, self.settings["benchmark_metric"], "the new model")
        if self._logs_candidate():
            registration.log_candidate_evaluation(
                self.experiment_run_id,
                self.new_metrics,
                self.benchmark,
                self.benchmark_digest,
                self.tracking_uri,
            )
        metric = self.settings["benchmark_metric"]
        old, new = self.baseline_record["metrics"][metric], self.new_metrics[metric]
        print(f"{metric} on the benchmark: baseline {old:.4f}, new model {new:.4f}")
        self.next(self.track_improvement)

    @step
    def track_improvement(self):
        """Register the new model against its baseline (the server signs), or reuse the improvement
        this evaluation registered before; compute it offline; or, in a dry run, only compute it."""
        from mlflow_hokusai_plugin.core import tags as T
        from mlflow_hokusai_plugin.pipeline import improvement

        common = {
            "contributors": self.contributors,
            "baseline_metrics": self.baseline_record["metrics"],
            "benchmark_metric": self.settings["benchmark_metric"],
        }
        with stops_on_bad_input():
            if self.dry_run and self.earlier_improvement:
                recorded = improvement.record_registered(
                    **common, tracking_uri=self.tracking_uri, model_id=self.earlier_improvement
                )
            elif self.dry_run:
                # An improvement is registered under its baseline's name.
                name = self.settings["model_name"]
                if self.baseline_id:
                    name = T.parse_model_id(self.baseline_id)[0]
                recorded = improvement.record_dry_run(
                    **common,
                    new_metrics=self.new_metrics,
                    baseline_id=self.baseline_id,
                    model_name=name,
                    services=not self.disable_services,
                )
            elif self.disable_services:
                recorded = improvement.record_offline(
                    **common,
                    new_metrics=self.new_metrics,
                    pipeline_run_id=self.pipeline_run_id,
                    data_hash=self.data_manifest["data_hash"],
                    benchmark_digest=self.benchmark_digest,
                    model_type=self.model_type,
                    project=self.settings["project"],
                )
            else:
                recorded = improvement.record_with_services(
                    **common,
                    new_metrics=self.new_metrics,
                    pipeline_run_id=self.pipeline_run_id,
                    tracking_uri=self.tracking_uri,
                    run_id=self.experiment_run_id,
                    model_uri=self.new_model_uri,
                    baseline_id=self.baseline_id,
                    improvement_key=self.improvement_key,
                    benchmark_digest=self.benchmark_digest,
                )
        self.new_model_id = recorded.model_id
        self.improvement = recorded.improvement
        self.attributed = recorded.contributors
        self.attestation = recorded.attestation
        self.improvement_reused = recorded.reused
        if recorded.registered_metrics is not None:
            # The output describes the improvement as registered, by the run that registered it.
            self.new_metrics = recorded.registered_metrics
        print(recorded.summary)
        self.next(self.generate_output)

    @step
    def generate_output(self):
        """Write the DeltaOne output document and the attestation to --output-dir (and to MLflow)."""
        from mlflow_hokusai_plugin import __version__
        from mlflow_hokusai_plugin.pipeline.output import deltaone_output
        from mlflow_hokusai_plugin.runtime.uris import redact_uri

        self.deltaone_output = deltaone_output(
            improvement=self.improvement,
            baseline_model={
                **self.baseline_record,
                "model_type": self.model_type,
                "mlflow_run_id": self.baseline_record.get("run_id"),
            },
            new_model={
                "model_id": self.new_model_id,
                "model_type": self.model_type,
                "metrics": self.new_metrics,
                "mlflow_run_id": self.experiment_run_id if self.new_model_id else None,
            },
            contributors=self.attributed,
            manifest=self.data_manifest,
            total_samples=self.total_samples,
            evaluation={
                "benchmark_dataset_digest": self.benchmark_digest,
                "benchmark_rows": len(self.benchmark),
                "benchmark_metric": self.settings["benchmark_metric"],
                "label_column": self.label_column,
            },
            pipeline={
                "flow_name": current.flow_name,
                "metaflow_run_id": current.run_id,
                "pipeline_run_id": self.pipeline_run_id,
                "dry_run": self.dry_run,
                "sample": self.sample,
                "improvement_key": self.improvement_key,
                "improvement_reused": self.improvement_reused,
                "services_enabled": not self.disable_services,
                "tracking_uri": None if self.disable_services else redact_uri(self.tracking_uri),
                "project": self.settings["project"],
                "plugin_version": __version__,
            },
            attestation=self.attestation,
            dry_run=self.dry_run and self.attestation is None,
        )
        run_dir = self._run_dir()
        self.output_files["deltaone_output"] = _write_json(run_dir, "deltaone_output", self.deltaone_output)
        if self.attestation is not None:
            self.output_files["attestation"] = _write_json(run_dir, "attestation", self.attestation)
        if self._logs_candidate():
            from mlflow import MlflowClient

            client = MlflowClient(self.tracking_uri)
            client.log_dict(self.experiment_run_id, self.deltaone_output, "hokusai/deltaone_output.json")
        for name, path in self.output_files.items():
            print(f"{name}: {path}")
        self.next(self.end)

    @step
    def end(self):
        computation = self.deltaone_output["delta_computation"]
        print(
            f"DeltaOne {computation['delta_one_score']:g} (+{computation['delta_one_bps']} bps) for "
            f"{self.new_model_id or 'the unregistered model'}; attestation "
            f"{self.deltaone_output['attestation']['status']}"
            + ("; dry run: nothing was written to MLflow" if self.dry_run else "")
        )

    def _logs_candidate(self) -> bool:
        """Whether this run logs into the candidate's MLflow run: not offline, not in a dry run, and
        not into the run of an improvement registered before (its documents describe its own run)."""
        return bool(self.experiment_run_id) and not (self.dry_run or self.earlier_improvement)

    def _run_dir(self) -> Path:
        from mlflow_hokusai_plugin.pipeline.settings import output_run_dir

        return output_run_dir(self.settings["output_dir"], current.run_id)

    def _use_tracking_server(self) -> None:
        """Every MLflow call of this step goes to --tracking-uri, whatever MLFLOW_TRACKING_URI says."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)

    def _parameter_values(self) -> dict:
        names = (
            "baseline_model contributed_data contributor model_type output_dir sample dry_run "
            "disable_services benchmark_data training_data label_column benchmark_metric model_name "
            "project experiment tracking_uri"
        ).split()
        return {name: getattr(self, name) for name in names}


def _write_json(directory: str | Path, name: str, document: dict) -> str:
    path = Path(directory) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Whole or not at all: a crash mid-write must not leave a truncated document behind.
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(partial, path)
    return str(path)


if __name__ == "__main__":
    HokusaiEvaluationFlow()
