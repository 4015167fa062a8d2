"""The whole benchmark, bounded in time: seed a fresh database, check it, load it, profile, drop it.

    python benchmarks/run.py [--scale full|small|smoke] [--postgres postgresql+psycopg2://postgres@127.0.0.1:5432]
                             [--out-dir benchmarks] [--keep-database]

``make bench`` runs it (``BENCH_SCALE=small make bench`` for a quick run). Steps:

1. ``seed.py`` into a new database ``hokusai_bench_<time>_<pid>`` (full: the issue's sizes, 100k
   versions, 1k models, 10 projects, lineage depth 1000, 10k contributors, 200k contributions);
2. ``check_seed.py`` on it;
3. ``load.py``: both servers (``--workers 4``) on it, every scenario (full: 10 s per read scenario,
   10 registrations per client; 32 clients);
4. ``profiling.py``: pyinstrument profiles of the deepest lineage query, contributor impact, a
   registration and MLflow's own get-model-version through the hokusai app;
5. ``results.json``, ``results.md`` (the fragment for docs/benchmarks.md) and the profiles in
   ``--out-dir``; then the database is dropped (unless ``--keep-database``), also after a failure.

Each subprocess has a timeout, so a stuck step fails the run instead of hanging it. Exits 1 if a
step failed or any request failed (the results are still written, and the server logs are kept in
the work directory it names).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from psycopg2 import sql
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # load.py beside this file, however this one is started

import load  # noqa: E402 - after the path line above

SCALES = {
    "full": {
        "seed": {
            "versions": 100_000,
            "models": 1000,
            "projects": 10,
            "max-depth": 1000,
            "contributors": 10_000,
            "contributions": 200_000,
        },
        "load": load.Settings(clients=32, duration=10.0, warmup=3, register_per_client=10, sequential=200),
        "seed_timeout": 300,  # it took 70 s on a 2-core machine
    },
    "small": {
        "seed": {
            "versions": 2000,
            "models": 40,
            "projects": 4,
            "max-depth": 1000,
            "contributors": 200,
            "contributions": 4000,
        },
        "load": load.Settings(clients=32, duration=3.0, warmup=2, register_per_client=3, sequential=50),
        "seed_timeout": 120,
    },
    # Seconds, not a measurement: tests/integration/test_benchmarks.py runs every step at this
    # scale so the benchmark cannot rot between `make bench` runs.
    "smoke": {
        "seed": {
            "versions": 300,
            "models": 6,
            "projects": 3,
            "max-depth": 100,
            "contributors": 40,
            "contributions": 500,
        },
        "load": load.Settings(
            clients=2, duration=0.3, warmup=1, register_per_client=2, sequential=3, rounds=1
        ),
        "seed_timeout": 120,
        "workers": 2,
        "profile_repeat": 3,
    },
}
PROFILES = ("lineage-max", "register", "impact", "get-model-version")


def step(title: str) -> float:
    print(f"\n== {title} ({time.strftime('%H:%M:%S')})", flush=True)
    return time.perf_counter()


def run(cmd: list[str], timeout: float) -> None:
    subprocess.run(cmd, check=True, timeout=timeout)


def admin(url: str):
    conn = load.connect(url, "postgres")
    conn.autocommit = True  # CREATE and DROP DATABASE cannot run in a transaction
    return conn


def drop_database(url: str) -> None:
    name = make_url(url).database
    conn = admin(url)
    try:
        with conn.cursor() as cur:
            # FORCE: a server that failed to stop must not keep the database alive.
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()
    print(f"dropped database {name}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default=os.environ.get("BENCH_SCALE") or "full")
    p.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432"),
        help="server to make the benchmark database on (no database name)",
    )
    p.add_argument("--out-dir", type=Path, default=HERE, help="where results and profiles go")
    p.add_argument("--keep-database", action="store_true", help="do not drop the database at the end")
    p.add_argument("--skip-profile", action="store_true")
    args = p.parse_args(argv)
    scale = SCALES[args.scale]
    name = f"hokusai_bench_{time.strftime('%Y%m%d%H%M%S')}_{os.getpid()}"
    url = f"{args.postgres.rstrip('/')}/{name}"
    workdir = Path(tempfile.mkdtemp(prefix="hokusai-bench-"))
    summary_path = workdir / "seed.json"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    overall = time.perf_counter()
    failed = True
    print(f"benchmark at scale {args.scale} on database {name}; work directory {workdir}")
    try:
        started = step("seed")
        seed_args = [f"--{k}={v}" for k, v in scale["seed"].items()]
        run(
            [py, str(HERE / "seed.py"), "--database-url", url, *seed_args, "--summary", str(summary_path)],
            scale["seed_timeout"],
        )
        print(f"seed step: {time.perf_counter() - started:.1f}s")

        started = step("check the seed")
        run([py, str(HERE / "check_seed.py"), "--database-url", url, "--summary", str(summary_path)], 600)
        summary = json.loads(summary_path.read_text())
        summary["check_seconds"] = time.perf_counter() - started

        step("load")
        report = load.benchmark(summary, url, scale["load"], workdir, scale.get("workers", 4))
        report["scale"] = args.scale

        profiles = []
        if args.skip_profile:
            pass
        elif importlib.util.find_spec("pyinstrument") is None:
            # Not among the package's dev extras: the rest of the benchmark does not need it.
            print("\npyinstrument is not installed (.venv/bin/pip install pyinstrument): no profiles")
        else:
            for which in PROFILES:
                scenario = (
                    f"lineage-{summary['parameters']['max_depth']}" if which == "lineage-max" else which
                )
                step(f"profile {scenario}")
                out = args.out_dir / f"profile-{scenario}.txt"
                repeat = str(scale.get("profile_repeat") or (5 if scenario == "register" else 20))
                run(
                    [py, str(HERE / "profiling.py"), "--summary", str(summary_path), "--database-url", url]
                    + ["--scenario", scenario, "--repeat", repeat, "--out", str(out)],
                    300,
                )
                profiles.append(os.path.relpath(out))
        report["profiles"] = profiles
        report["total_seconds"] = round(time.perf_counter() - overall, 1)

        text = load.markdown(report)
        text += (
            f"\nScale `{args.scale}`; the whole run (seed, check, load, profiles) took "
            f"{report['total_seconds']:.0f} s; reproduce with "
            f"`{'BENCH_SCALE=small ' if args.scale == 'small' else ''}make bench`.\n"
        )
        if profiles:
            text += "Profiles: " + ", ".join(f"`{p}`" for p in profiles) + ".\n"
        (args.out_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out_dir / "results.md").write_text(text)
        print("\n" + text)
        print(f"results: {args.out_dir / 'results.json'}, {args.out_dir / 'results.md'}")
        failed = any(r["errors"] for r in report["results"])
    finally:
        if args.keep_database:
            print(f"kept database {name}: {url}")
        else:
            drop_database(url)
        if failed:
            # Kept: the server logs say what went wrong.
            print(f"failed or had errors; server logs and the seed summary are in {workdir}", file=sys.stderr)
        elif args.keep_database:
            # Kept with the database: profiling.py and load.py take the seed summary.
            print(f"kept the seed summary {summary_path} (profiling.py --summary ...)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"total {time.perf_counter() - overall:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
