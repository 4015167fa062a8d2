"""`make bench` at smoke scale: every step runs (seed, check, both servers under load, profiles).

Nothing here is timed: the numbers of a run this small mean nothing. What it catches is the
benchmark rotting between full runs (a scenario that errors, a seed the stores no longer read,
a report that no longer renders, a database left behind).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _bench_databases(base_url: str) -> set[str]:
    with psycopg2.connect(base_url + "/postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'hokusai_bench_%'")
        return {row[0] for row in cur.fetchall()}


def test_the_benchmark_runs_every_step_at_smoke_scale(postgres, tmp_path):
    before = _bench_databases(postgres.base_url)
    postgres_url = postgres.base_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--scale", "smoke"]
        + ["--postgres", postgres_url, "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    report = json.loads((tmp_path / "results.json").read_text())
    rows = {(row["scenario"], row["server"]): row for row in report["results"]}
    expected = {
        ("sequential /health, kept-alive connection", "plain"),
        ("get-model-version", "hokusai"),
        ("get-model-version", "plain"),
        ("search-model-versions", "hokusai"),
        ("lineage depth 10", "hokusai"),
        ("lineage depth 100", "hokusai"),
        ("contributor impact (heaviest)", "hokusai"),
        ("register improved version (signed)", "hokusai"),
        ("create model version (no tags)", "plain"),
    }
    assert expected <= set(rows), sorted(set(rows))
    for row in rows.values():
        assert row["requests"] > 0 and row["errors"] == 0, row
    # Every registration was checked to come back signed (an unsigned one counts as an error).
    assert rows[("register improved version (signed)", "hokusai")]["requests"] == 4

    markdown = (tmp_path / "results.md").read_text()
    assert "| register improved version (signed) | hokusai |" in markdown
    assert "## Targets" in markdown
    # Each profile reached the code it is about.
    for name, frame in (
        ("profile-lineage-100.txt", "model_lineage"),
        ("profile-register.txt", "HokusaiRegistryStore.create_model_version"),
        ("profile-impact.txt", "contributor_impact"),
        ("profile-get-model-version.txt", "FlaskClient.get"),
    ):
        profile = (tmp_path / name).read_text()
        assert profile.startswith("pyinstrument profile:") and frame in profile, profile[:3000]
    # The database it made is gone again.
    assert _bench_databases(postgres.base_url) == before
