"""``hokusai pipeline run``: the flow on Metaflow's runtime, then a verdict read back from Metaflow.

The flow runs as Metaflow runs any flow (``python flow.py run ...``), so every Metaflow option
works. Afterwards the run is read back through the Metaflow client, in a child process with the
same environment (Metaflow reads its configuration once, at import), to say which step failed
and why, or what the run produced.

Example::

    outcome = run_flow(["--sample", "--disable-services", "--output-dir", "out"])
    outcome.ok, outcome.run_id, outcome.report["deltaone_output"]["delta_computation"]
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FLOW_MODULE = "mlflow_hokusai_plugin.pipeline.flow"
FLOW_NAME = "HokusaiEvaluationFlow"
# Artifacts the report carries back from a finished run.
REPORTED_ARTIFACTS = ("deltaone_output", "output_files", "baseline_id", "new_model_id", "attestation")


def flow_file() -> str:
    """The flow's source file, found without importing Metaflow into this process."""
    return importlib.util.find_spec(FLOW_MODULE).origin


def flow_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment the flow runs in: the caller's, plus what Metaflow and MLflow need to run
    unattended (Metaflow refuses to run without a user name, which containers and CI lack)."""
    env = dict(os.environ if base is None else base)
    if not any(env.get(name) for name in ("METAFLOW_USER", "USER", "USERNAME")):
        env["METAFLOW_USER"] = "hokusai"
    env.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    env.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def flow_help(prog_name: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Metaflow's help for ``run`` (every parameter of the flow), as ``prog_name``'s own help.

    Metaflow sets up its local datastore before it reads any subcommand's options, ``--help``
    included, so help would leave a ``.metaflow/`` folder in the current directory: it is given a
    scratch datastore instead. Its usage line names the flow file; it names ``prog_name`` here.
    """
    env = flow_environment(env)
    with tempfile.TemporaryDirectory() as scratch:
        env["METAFLOW_DATASTORE_SYSROOT_LOCAL"] = scratch
        completed = subprocess.run(
            [sys.executable, flow_file(), "run", "--help"],
            env=env,
            cwd=scratch,
            capture_output=True,
            text=True,
        )
    usage = f"Usage: {Path(flow_file()).name} run"
    completed.stdout = completed.stdout.replace(usage, f"Usage: {prog_name}", 1)
    return completed


@dataclass
class FlowOutcome:
    """How a flow run ended."""

    returncode: int
    run_id: str | None
    failed_step: str | None = None
    error: str | None = None
    bad_input: bool = False  # the failure was the input's (a parameter, a file, a row)
    report: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_flow(
    flow_args: Sequence[str],
    *,
    metaflow_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    stdout: int | None = None,
) -> FlowOutcome:
    """Run the flow with ``flow_args`` (its parameters and ``run`` options) and read the outcome.

    ``metaflow_args`` go before ``run`` (``--datastore``, ``--environment`` ...). Output goes to
    this process's stdout unless ``stdout`` says otherwise (``subprocess.DEVNULL``, a file ...).
    """
    env = flow_environment(env)
    with tempfile.TemporaryDirectory() as scratch:
        run_id_file = Path(scratch) / "run-id"
        command = [sys.executable, flow_file(), *metaflow_args, "run", *flow_args]
        command += ["--run-id-file", str(run_id_file)]
        stderr = subprocess.STDOUT if stdout is not None else None
        returncode = _run_as_a_group(command, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
        run_id = run_id_file.read_text().strip() if run_id_file.exists() else None
    outcome = FlowOutcome(returncode, run_id or None)
    if outcome.run_id:
        report = _read_back(outcome.run_id, env, cwd)
        outcome.report = report
        if not outcome.ok:
            outcome.failed_step, outcome.error = report.get("failed_step"), report.get("error")
            outcome.bad_input = str(report.get("error_type", "")).endswith(".PipelineInputError")
    return outcome


def _run_as_a_group(command: list[str], **popen: object) -> int:
    """Run ``command`` in a process group of its own and wait; if this wait is interrupted (Ctrl-C,
    or a SIGTERM a caller turned into an exception), end the whole group, Metaflow's step
    processes included, before passing the interruption on."""
    process = subprocess.Popen(command, start_new_session=True, **popen)
    try:
        return process.wait()
    except BaseException:
        _end_group(process)
        raise


def _end_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            # The runtime is gone; its step processes may outlive it by a moment.
            os.killpg(process.pid, signal.SIGKILL)
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            pass
        return


def _read_back(run_id: str, env: Mapping[str, str], cwd: str | os.PathLike | None) -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", __name__, run_id],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        return {"error": f"could not read run {run_id} back from Metaflow: {completed.stderr.strip()[-500:]}"}
    return json.loads(completed.stdout)


def report_run(run_id: str) -> dict:
    """Where a run failed and why, or the artifacts it produced (runs in the child process)."""
    from metaflow import Run, namespace

    namespace(None)
    run = Run(f"{FLOW_NAME}/{run_id}")
    report: dict = {"run_id": run_id, "successful": run.successful}
    for flow_step in run:
        for task in flow_step:
            if not task.successful and task.exception is not None:
                report["failed_step"] = flow_step.id
                report["error"] = str(task.exception.exception)
                report["error_type"] = task.exception.type
    if run.successful:
        data = run.data
        report.update({name: getattr(data, name, None) for name in REPORTED_ARTIFACTS})
    return report


if __name__ == "__main__":
    print(json.dumps(report_run(sys.argv[1]), default=str))
