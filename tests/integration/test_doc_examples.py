"""Every shell and Python example of README.md and docs/*.md, run as written (see
tests/doc_examples.py): a page's examples run in order in one session, as a reader would type them.

The few that cannot run here are listed in ``NOT_RUN`` with the reason; a test keeps that list
honest (each entry names an example that exists, and no other example escapes).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess

import pytest

from tests.doc_examples import PAGES, ROOT, DocSession, Example, ExampleFailed, examples, fenced_blocks

# (page, the example's first line): why it is not run here.
NOT_RUN: dict[tuple[str, str], str] = {
    (
        "README.md",
        "make demo ",
    ): "`make test` is this suite; `make demo` is run by tests/integration/test_stopping.py",
    ("README.md", "cp server_config/.env.example"): (
        "docker compose needs a Docker engine, which this machine lacks "
        "(test_deployment_files checks the stack)"
    ),
    ("docs/api.md", 'curl -sS --fail-with-body -X POST -H "$AUTH" "$H/attestations/$ID/renew"'): (
        "a renewal needs a server with the chain domain and a model with an on-chain id; "
        "tests/integration/test_onchain_attestations.py renews through this route and the app client"
    ),
    (
        "docs/api.md",
        "renewed = client.renew_attestation(",
    ): "as above: the walkthrough's models have no on-chain id",
    (
        "docs/pipeline.md",
        "python -m mlflow_hokusai_plugin.pipeline.flow --datastore=s3 run --with kubernetes",
    ): ("needs a Kubernetes cluster and S3; tests/integration/test_pipeline.py runs the same flow locally"),
    ("docs/attestation.md", "import base64, json"): (
        "run by tests/unit/test_attestation_docs.py on a document with an EIP-712 part "
        "(the walkthrough's models have no on-chain id, so their documents have none)"
    ),
    ("docs/attestation.md", "import hashlib"): "as above",
    (
        "docs/backup.md",
        "#!/bin/sh",
    ): "backup.sh drives the compose stack: needs a Docker engine, which this machine lacks",
    (
        "docs/backup.md",
        "stamp=$(date -u",
    ): "pg_basebackup in the compose stack's PostgreSQL container: needs Docker",
    ("docs/benchmarks.md", "make bench "): (
        "the full benchmark takes about an hour of both cores; tests/integration/test_benchmarks.py runs "
        "benchmarks/run.py at its smallest scale"
    ),
    ("docs/deployment.md", "cp server_config/.env.example server_config/.env"): (
        "run by test_the_env_file_recipe_leaves_no_placeholder (below), which also checks what it wrote"
    ),
    ("docs/deployment.md", "export COMPOSE_ENV_FILES"): "for the docker compose commands that follow",
    (
        "docs/deployment.md",
        "docker compose",
    ): "docker compose needs a Docker engine, which this machine lacks",
    ("docs/deployment.md", "curl -s http://localhost:8080"): "the compose stack's nginx: needs Docker",
    ("docs/migration.md", "export HOKUSAI_STORE_URI=hokusai+postgresql://mlflow:...@postgres/mlflow"): (
        "needs a registry of models registered before the plugin and their mapping; "
        "tests/integration/test_migrate.py runs these commands on one"
    ),
    ("docs/server.md", "export HOKUSAI_ATTESTER_KEY=0x..."): (
        "a production command line (hosts db and S3); tests/integration/test_server_plugin.py "
        "starts the same server on this machine's PostgreSQL and S3 over HTTP"
    ),
}

# One session per walkthrough: its first page, then the pages that continue it (they say so).
WALKTHROUGHS: dict[str, tuple[str, ...]] = {
    "README.md": ("README.md", "docs/api.md", "docs/server.md", "docs/backup.md"),
    "docs/pipeline.md": ("docs/pipeline.md",),
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _not_run(example: Example) -> str | None:
    return next(
        (
            why
            for (page, start), why in NOT_RUN.items()
            if page == example.page and example.first_line.startswith(start)
        ),
        None,
    )


def _runnable(page: str) -> list[Example]:
    return [e for e in examples(page) if _not_run(e) is None]


def test_every_example_is_run_or_says_why_not():
    every = [e for page in PAGES for e in examples(page)]
    unused = [k for k in NOT_RUN if not any(e.page == k[0] and e.first_line.startswith(k[1]) for e in every)]
    assert not unused, unused
    assert all(reason.strip() for reason in NOT_RUN.values())


def test_no_shell_example_hides_a_failure_from_set_e():
    """`export X=$(cmd)`, `local X=$(cmd)` and `env $(cmd) ...` succeed whatever cmd does."""
    hiding = re.compile(r"^\s*(?:export|local|declare|readonly)\s+\w+=\"?\$\(|\benv \$\(", re.M)
    found = [e.name for p in PAGES for e in examples(p) if e.language == "sh" and hiding.search(e.code)]
    assert found == []


def test_every_page_with_examples_to_run_is_in_a_walkthrough():
    walked = {page for pages in WALKTHROUGHS.values() for page in pages}
    assert [p for p in PAGES if _runnable(p) and p not in walked] == []


@pytest.mark.slow
@pytest.mark.parametrize("walkthrough", sorted(WALKTHROUGHS))
def test_the_walkthrough_runs_as_written(walkthrough):
    session = DocSession(_free_port())
    try:
        for example in [e for page in WALKTHROUGHS[walkthrough] for e in _runnable(page)]:
            print(f"--- {example.name}\n{session.run(example)[-500:]}")  # shown when the test fails
    finally:
        session.close()


def test_the_env_file_recipe_leaves_no_placeholder(tmp_path):
    block = fenced_blocks("docs/deployment.md", "sh", under="### 1. Create the env file")[0]
    (tmp_path / "server_config").mkdir()
    shutil.copy(ROOT / "server_config" / ".env.example", tmp_path / "server_config" / ".env.example")
    done = subprocess.run(["bash", "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.stdout == "" and done.stderr == "", done.stdout + done.stderr
    env = (tmp_path / "server_config" / ".env").read_text()
    assert oct((tmp_path / "server_config" / ".env").stat().st_mode)[-3:] == "600"
    for name in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "HOKUSAI_ATTESTER_PASSWORD"):
        (value,) = [line.split("=", 1)[1] for line in env.splitlines() if line.startswith(name + "=")]
        assert len(value) == 48 and int(value, 16) >= 0  # 24 random bytes in hex


@pytest.mark.parametrize(
    "language, code",
    [
        ("sh", "X=$(hokusai no-such-command)\necho after\n"),
        ("sh", "false\necho after\n"),
        ("sh", "echo $UNSET_IN_THE_DOCS\n"),
        ("sh", "false | cat\n"),
        ("python", "import threading\nt = threading.Thread(target=lambda: 1 / 0)\nt.start(); t.join()\n"),
        ("python", "raise SystemExit(0)\n"),
    ],
)
def test_the_session_fails_an_example_that_fails(language, code):
    session = DocSession(_free_port(), timeout=60)
    try:
        with pytest.raises(ExampleFailed):
            session.run(Example("probe.md", 1, language, code))
    finally:
        session.close()


def test_the_session_ends_what_its_examples_left_running():
    session = DocSession(_free_port(), timeout=60)
    try:
        session.run(Example("probe.md", 1, "sh", "sleep 4343 &\necho $! > sleeper.pid\n"))
        pid = int((session.folder / "sleeper.pid").read_text())
        assert session.run(Example("probe.md", 3, "sh", "echo still here\n")) == "still here\n"
    finally:
        session.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
