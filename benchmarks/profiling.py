"""Profile one Hokusai request path in-process with pyinstrument, on a database seeded by seed.py.

    python benchmarks/profiling.py --summary seed.json [--database-url ...] \\
        [--scenario lineage-1000|lineage-100|impact|register] [--repeat 20] [--out profile.txt]

The hokusai app is built the way ``mlflow server --app-name hokusai`` builds it in a worker (the
same ``_MLFLOW_SERVER_*`` variables, ``create_app``), minus uvicorn, and the request goes through
Flask's test client: routing, the plugin's hooks, the store and JSON encoding are all in the
profile, the network and ASGI bridge are not. pyinstrument samples wall time, so time spent
waiting on PostgreSQL shows as time in the psycopg2 calls. One process, one request at a time:
this is where a single request's time goes, not how it behaves under concurrency.

(Not named ``profile.py``: run as a script, this directory comes first on ``sys.path`` and would
shadow the standard library's ``profile`` module, which ``cProfile`` imports.)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ATTESTER_KEY = "0x" + "b3" * 32


def build_app(database_url: str, artifacts: str):
    """The hokusai Flask app, configured as a server worker would be."""
    rest = database_url.split("://", 1)[1]
    store_uri = "hokusai+postgresql://" + rest
    os.environ.update(
        {
            "_MLFLOW_SERVER_FILE_STORE": store_uri,
            "_MLFLOW_SERVER_REGISTRY_STORE": store_uri,
            "_MLFLOW_SERVER_ARTIFACT_ROOT": "mlflow-artifacts:/",
            "_MLFLOW_SERVER_SERVE_ARTIFACTS": "true",
            "_MLFLOW_SERVER_ARTIFACT_DESTINATION": artifacts,
            "HOKUSAI_AUTH": "none",
            "HOKUSAI_DEV_MODE": "1",
            "HOKUSAI_ATTESTER_KEY": ATTESTER_KEY,
            "HOKUSAI_RATELIMIT_ENABLED": "0",
        }
    )
    os.environ.pop("_MLFLOW_SGI_NAME", None)  # not under uvicorn: create_app returns the Flask app
    from mlflow.server.handlers import initialize_backend_stores

    from mlflow_hokusai_plugin.server.app import create_app

    # What `mlflow server` does before it starts workers. It also points MLFLOW_TRACKING_URI at the
    # store, which the workers inherit and the registry store's registrar reads runs through;
    # without it, they would be looked for in ./mlflow.db.
    initialize_backend_stores(store_uri, store_uri, "mlflow-artifacts:/")
    from mlflow_hokusai_plugin.server.request_log import request_logger

    app = create_app()
    # The request log line stays in the profile (a server writes it too), but goes nowhere
    # rather than between the report's lines.
    for handler in request_logger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - for the life of the process
    return app


class TestClientApi:
    """The few REST calls load.py's registration setup makes, through the Flask test client."""

    def __init__(self, client) -> None:
        self.client = client

    def call(self, method: str, path: str, params=None, json=None, data=None, headers=None) -> dict:
        response = self.client.open(
            path, method=method, query_string=params, json=json, data=data, headers=headers
        )
        if response.status_code >= 300:
            raise RuntimeError(
                f"{method} {path}: {response.status_code} {response.get_data(as_text=True)[:500]}"
            )
        return response.get_json(silent=True) or {}


def requests_of(scenario: str, summary: dict, client, count: int):
    """(description, a function making the i-th request and returning the response)."""
    if scenario.startswith("lineage-"):
        depth = scenario.split("-", 1)[1]
        if depth not in summary["lineage"]:
            raise SystemExit(
                f"no lineage chain of depth {depth} in the summary: {sorted(summary['lineage'])}"
            )
        model_id = summary["lineage"][depth]["model_id"]
        path = f"/api/2.0/hokusai/models/{quote(model_id, safe='/')}/lineage"
        return f"GET {path} (lineage of a chain of depth {depth}, both directions)", lambda i: client.get(
            path
        )
    if scenario == "impact":
        address = summary["heaviest_contributor"]["address"]
        path = f"/api/2.0/hokusai/contributors/{address}/impact"
        return (
            f"GET {path} (the heaviest contributor: {summary['heaviest_contributor']['contributions']} "
            "contributions; first page of 100)",
            lambda i: client.get(path),
        )
    if scenario == "get-model-version":
        # MLflow's own route through the hokusai app: what the plugin's hooks add around it.
        model = summary["models"][0]
        query = {"name": model["name"], "version": str(model["versions"])}
        path = "/api/2.0/mlflow/model-versions/get"
        return f"GET {path} {query} (MLflow's own route)", lambda i: client.get(path, query_string=query)
    if scenario == "register":
        try:
            from benchmarks import load
        except ImportError:  # run as a script: this directory is on sys.path
            import load

        api = TestClientApi(client)
        model = next(
            {"name": m["name"], "latest": m["versions"]} for m in summary["models"] if m["versions"] > 1
        )
        plan = load.improvement_plan(api, model, summary)
        # Untimed, like in the load scenario: the source runs with metric, digest and artifact.
        runs = [load.make_source_run(api, plan, f"bench-profile-{i}") for i in range(count)]

        def register(i: int):
            run_id = runs[i]
            return client.post(
                "/api/2.0/mlflow/model-versions/create",
                json={
                    "name": plan["name"],
                    "source": f"runs:/{run_id}/model",
                    "run_id": run_id,
                    "tags": [{"key": k, "value": v} for k, v in plan["tags"].items()],
                },
            )

        return (
            f"POST /api/2.0/mlflow/model-versions/create of an improved version of {plan['name']} "
            "(validate, digest the artifact, sign, record lineage, contributions and audit)",
            register,
        )
    raise SystemExit(f"unknown scenario {scenario!r}: lineage-<depth>, impact, get-model-version or register")


def profile(summary: dict, database_url: str, scenario: str, repeat: int) -> str:
    from pyinstrument import Profiler

    with tempfile.TemporaryDirectory(prefix="hokusai-profile-") as artifacts:
        app = build_app(database_url, artifacts)
        client = app.test_client()
        # Registrations are slow and each needs a source run of its own: fewer of them.
        warm, timed = (1, 3) if scenario == "register" else (3, repeat)
        what, make = requests_of(scenario, summary, client, warm + timed + repeat)
        # Untimed warm-up (connections, caches, first-call imports), then timed without the
        # profiler, then profiled: the profiler's own overhead does not enter the timings.
        index = 0

        def one() -> float:
            nonlocal index
            started = time.perf_counter()
            response = make(index)
            index += 1
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise SystemExit(f"{what}: {response.status_code} {response.get_data(as_text=True)[:500]}")
            return elapsed

        for _ in range(warm):
            one()
        timings = [one() for _ in range(timed)]
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for _ in range(repeat):
            one()
        profiler.stop()
        # MLflow's own route is all library frames, which pyinstrument folds away: show Flask's
        # hooks and ours, so the plugin's share of the request can be read off.
        shown = {"show_regex": r".*(mlflow_hokusai_plugin|flask/app\.py|mlflow/server/handlers\.py)"}
        text = profiler.output_text(
            unicode=True,
            color=False,
            show_all=False,
            processor_options=shown if scenario == "get-model-version" else None,
        )
    header = [
        f"pyinstrument profile: {what}",
        f"database {database_url.rsplit('/', 1)[-1]}: {summary['counts']['model_versions']} model versions, "
        f"{summary['counts']['hokusai_lineage_edges']} lineage edges, "
        f"{summary['counts']['hokusai_contributions']} contributions",
        f"in-process, Flask test client, one request at a time; {repeat} requests profiled "
        f"(wall-clock sampling every 0.5 ms)",
        f"without the profiler: {statistics.median(timings) * 1000:.1f} ms per request "
        f"(median of {len(timings)})",
        f"made {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} by benchmarks/profiling.py",
        "",
    ]
    return "\n".join(header) + text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--summary", type=Path, required=True, help="the JSON summary benchmarks/seed.py wrote")
    p.add_argument("--database-url", help="default: the summary's")
    p.add_argument(
        "--scenario", default=None, help="lineage-<depth> (default: the deepest), impact, register"
    )
    p.add_argument("--repeat", type=int, default=20, help="requests inside the profile")
    p.add_argument("--out", type=Path, help="write the text profile here (default: print it)")
    args = p.parse_args(argv)
    summary = json.loads(args.summary.read_text())
    scenario = args.scenario or f"lineage-{summary['parameters']['max_depth']}"
    text = profile(summary, args.database_url or summary["database_url"], scenario, max(2, args.repeat))
    if args.out:
        args.out.write_text(text)
        print(f"profile of {scenario}: {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
