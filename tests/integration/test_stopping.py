"""However the demo or the test suite is stopped, nothing it started is left running.

``make demo`` killed with SIGTERM (a CI timeout, a supervisor) does not pass the signal on to its
recipe; ``hokusai demo`` killed during its flow; ``pytest`` killed while a fixture's server runs.
Each time the ``mlflow server`` processes (each its own process group: uvicorn and its workers)
and the Metaflow processes (working in the demo's folder) must be gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.doc_examples import ROOT

pytestmark = pytest.mark.slow

HOKUSAI = str(Path(sys.executable).parent / "hokusai")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HOKUSAI_", "MLFLOW_"))}


def processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (process group, command line, working directory) of every process we can read."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            group = int(stat.rsplit(")", 1)[1].split()[2])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry.name)] = (group, command, cwd)
    return found


def left_behind(workdir: Path, groups: set[int]) -> list[str]:
    return [
        f"{pid}: {command[:200]}"
        for pid, (group, command, cwd) in processes().items()
        if pid != os.getpid() and (group in groups or cwd.startswith(str(workdir)) or str(workdir) in command)
    ]


def server_groups(workdir: Path) -> set[int]:
    return {group for group, command, _ in processes().values() if f"{workdir}/mlflow.db" in command}


def wait_for_line(log: Path, text: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        assert process.poll() is None, f"exited with {process.returncode} before {text!r}:\n{log.read_text()}"
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} in {timeout}s:\n{log.read_text()[-3000:]}")


def assert_nothing_left(workdir: Path, groups: set[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (remaining := left_behind(workdir, groups)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not remaining, "\n".join(remaining)


def test_make_demo_killed_with_sigterm_leaves_no_process(tmp_path):
    workdir, log = tmp_path / "demo", tmp_path / "make.log"
    with open(log, "w") as out:
        make = subprocess.Popen(
            # The virtualenv running these tests (make's own default is the repository's .venv).
            ["make", "-C", str(ROOT), "demo", f"VENV={sys.prefix}"]
            + [f"DEMO_ARGS=--workdir {workdir} --keep-serving"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    try:
        wait_for_line(log, "Serving the MLflow UI until Ctrl-C", make, timeout=400)
        groups = server_groups(workdir)
        assert groups, "the demo's server is not running"
        make.send_signal(signal.SIGTERM)  # make only: it does not signal its recipe
        make.wait(30)
        assert_nothing_left(workdir, groups)
        assert "Stopping the embedded MLflow server." in log.read_text()
    finally:
        if make.poll() is None:
            make.kill()


def test_hokusai_demo_terminated_during_its_flow_stops_the_flow_and_the_server(tmp_path):
    workdir, log = tmp_path / "demo", tmp_path / "demo.log"
    with open(log, "w") as out:
        demo = subprocess.Popen(
            [HOKUSAI, "demo", "--workdir", str(workdir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    try:
        wait_for_line(log, "Running HokusaiEvaluationFlow", demo, timeout=300)
        time.sleep(3)  # into the flow: Metaflow's runtime and a step are running
        groups = server_groups(workdir)
        assert groups, "the demo's server is not running"
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(60) == 130
        assert_nothing_left(workdir, groups)
        assert "Interrupted (SIGTERM): the demo's server and flow are stopped." in log.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()


PROBE = """
import time

def test_holds_a_server(hokusai_server):
    print("SERVER", hokusai_server.url, flush=True)
    time.sleep(600)
"""


def test_pytest_terminated_stops_the_servers_its_fixtures_started(tmp_path):
    (tmp_path / "test_probe.py").write_text(PROBE)
    log = tmp_path / "pytest.log"
    with open(log, "w") as out:
        # This suite's fixtures (tests/conftest.py as a plugin) in a pytest of its own.
        suite = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-s", "-q", "-p", "no:cacheprovider"]
            + [str(tmp_path / "test_probe.py"), "--rootdir", str(tmp_path)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    try:
        wait_for_line(log, "SERVER http://", suite, timeout=300)
        port = log.read_text().split("SERVER http://", 1)[1].split()[0].rsplit(":", 1)[1]
        groups = {g for g, command, _ in processes().values() if f"--port {port} " in command + " "}
        assert groups, "the fixture's server is not running"
        suite.send_signal(signal.SIGTERM)
        assert suite.wait(120) == 2  # pytest's "interrupted"
        assert_nothing_left(tmp_path, groups)
        assert "KeyboardInterrupt: pytest received SIGTERM" in log.read_text()
    finally:
        if suite.poll() is None:
            suite.kill()
