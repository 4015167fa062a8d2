"""Load scenarios against ``mlflow server --app-name hokusai`` and plain ``mlflow server``, same database.

    python benchmarks/load.py --summary seed.json [--clients 32 --duration 10 --register-per-client 10] \\
        [--scenarios keepalive,mlflow,hokusai,register] [--json benchmarks/results.json] \\
        [--markdown benchmarks/results.md]

It starts both servers itself (``--workers 4`` each, its own port and local artifact directory)
against the database that ``benchmarks/seed.py`` filled (``--database-url``, default: the one the
summary names), runs the scenarios one at a time, stops both servers and reports:

- keepalive: one client, sequential requests on one kept-alive connection and on a fresh
  connection each, to ``/health`` and to get-model-version, on both servers (plain MLflow under
  uvicorn with several workers stalls ~40 ms per kept-alive answer; see
  ``mlflow_hokusai_plugin/server/tcp_nodelay.py``);
- mlflow: get-model-version (on kept-alive connections, and with ``Connection: close`` so that
  the stall is out of the comparison) and search-model-versions through both servers (the plugin's
  overhead), in alternating rounds (A B B A) merged per server;
- hokusai: lineage at depth 10, 100 and ``--max-depth`` and the heaviest contributor's impact, on
  the hokusai server: one client first (the time of one request), then ``--clients``;
- register: ``model-versions/create`` of improved versions with the ``hokusai.*`` tags (validated,
  artifact-digested, signed and recorded by the server) on the hokusai server, against plain
  ``model-versions/create`` without tags on the plain server. Their source runs, with the benchmark
  metric, the dataset digest tag and a tiny ``model/MLmodel`` artifact, are made through the REST
  API before the clock starts. This scenario writes versions, so it runs last.

The driver is closed-loop: ``--clients`` threads, each with its own ``requests.Session`` (one
kept-alive connection), send their next request as soon as the last one is answered, for
``--duration`` seconds (reads) or ``--register-per-client`` requests (registrations). httpx is not
installed in this venv, hence threads. The driver shares the machine with the servers and
PostgreSQL, so each scenario also reports how many cores the driver, the server and PostgreSQL
used and the CPU time per request (from /proc), and the peak number of database connections.
Non-2xx answers, and registrations that did not come back signed, are errors. Before any
measurement every worker of both servers gets a few requests (plain MLflow builds its stores at a
worker's first request).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

import requests

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.metrics import metric_direction
from mlflow_hokusai_plugin.demo.embedded_server import MlflowServerProcess

try:  # one way of opening a psycopg2 connection from a SQLAlchemy URL, seed.py's
    from benchmarks.seed import connect
except ImportError:  # run as a script, or imported by one: this directory is on sys.path
    from seed import connect

MLFLOW_API = "/api/2.0/mlflow"
HOKUSAI_API = "/api/2.0/hokusai"
# A fixed throwaway key (the servers run in dev mode on a throwaway database): the attester of
# every version the register scenario creates.
ATTESTER_KEY = "0x" + "b3" * 32
TINY_MLMODEL = b"artifact_path: model\nflavors: {}\nhokusai_benchmark: true\n"
ERROR_SAMPLES = 5

# The targets (issue 7), checked in the report.
TARGET_HOKUSAI_P99_MS = 50.0
FLOOR_SCENARIO = "/health (an empty route: the floor)"
TARGET_REGISTER_RATIO = 0.5


# -- the driver --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request; ``check`` may reject a 2xx answer (returns the reason)."""

    method: str
    path: str
    params: dict | None = None
    body: dict | None = None
    check: Callable[[requests.Response], str | None] | None = None
    headers: dict | None = None


@dataclass
class Outcome:
    """What one scenario measured on one server."""

    name: str
    server: str
    latencies: list[float] = field(default_factory=list)  # seconds, failed requests included
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # cores used on average: driver, server, postgres
    clients: int = 1
    db_connections: int | None = None  # peak connections to the database during the scenario

    def summary(self) -> dict:
        ordered = sorted(self.latencies)
        n = len(ordered)
        return {
            "scenario": self.name,
            "server": self.server,
            "clients": self.clients,
            "requests": n,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "p50_ms": _ms(percentile(ordered, 50)),
            "p95_ms": _ms(percentile(ordered, 95)),
            "p99_ms": _ms(percentile(ordered, 99)),
            "max_ms": _ms(ordered[-1]) if n else None,
            "mean_ms": _ms(sum(ordered) / n) if n else None,
            "throughput_rps": round(n / self.wall, 1) if self.wall else None,
            "wall_s": round(self.wall, 2),
            "cpu_cores": {k: round(v, 2) for k, v in self.cpu.items()},
            # CPU time per request (ms): steadier than latency percentiles when the machine is
            # saturated, where those mostly measure queueing.
            "cpu_ms_per_request": (
                {k: round(v * self.wall / n * 1000, 2) for k, v in self.cpu.items() if k != "driver"}
                if self.cpu and n
                else {}
            ),
            "db_connections_peak": self.db_connections,
        }


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence.

    >>> percentile([1, 2, 3, 4], 50), percentile([1, 2, 3, 4], 99), percentile([], 50)
    (2, 4, None)
    """
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def send(session: requests.Session, base_url: str, call: Call) -> str | None:
    """Send ``call``; None if it succeeded, else why not (one line)."""
    try:
        response = session.request(
            call.method,
            base_url + call.path,
            params=call.params,
            json=call.body,
            headers=call.headers,
            timeout=120,
        )
    except requests.RequestException as exc:
        return f"{call.method} {call.path}: {type(exc).__name__}: {exc}"
    if not 200 <= response.status_code < 300:
        return f"{response.status_code} {call.method} {call.path}: {response.text[:300]}"
    if call.check:
        try:
            problem = call.check(response)
        except Exception as exc:  # noqa: BLE001 - a malformed answer is an error to count, not a crash
            problem = f"unreadable answer ({type(exc).__name__}: {exc}): {response.text[:200]}"
        if problem:
            return f"{call.method} {call.path}: {problem}"
    return None


class CpuMeter:
    """CPU seconds of this process, of a server's process group and of PostgreSQL, from /proc.

    On 2 cores the driver, 4 workers and PostgreSQL compete; these say who used the machine.
    """

    def __init__(self, server_pgid: int | None) -> None:
        self.server_pgid = server_pgid
        self.tick = os.sysconf("SC_CLK_TCK")

    def sample(self) -> dict[str, float]:
        server = postgres = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as handle:
                    raw = handle.read()
            except OSError:
                continue
            comm = raw[raw.find("(") + 1 : raw.rfind(")")]
            fields = raw[raw.rfind(")") + 2 :].split()
            # utime, stime and the children's cutime, cstime: PostgreSQL backends that exit
            # during a scenario are counted through the postmaster that reaps them.
            ticks = sum(int(x) for x in fields[11:15])
            if self.server_pgid is not None and int(fields[2]) == self.server_pgid:
                server += ticks
            elif comm == "postgres":
                postgres += ticks
        return {"driver": time.process_time(), "server": server / self.tick, "postgres": postgres / self.tick}

    @staticmethod
    def cores(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
        return {k: (after[k] - before[k]) / wall for k in before} if wall > 0 else {}


class ConnectionPeak:
    """The most connections to the database seen during a scenario (pg_stat_activity, every 0.2 s).

    PostgreSQL's max_connections (100 by default) is shared by both servers' pools: 4 workers, each
    with a pool per store, can exhaust it, and then requests fail with "too many clients".
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ConnectionPeak:
        self._thread = threading.Thread(target=self._poll, name="connection-peak", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _poll(self) -> None:
        conn = connect(self.database_url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while True:
                    cur.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()"
                    )
                    self.peak = max(self.peak, cur.fetchone()[0])
                    if self._stop.wait(0.2):
                        return
        finally:
            conn.close()


def closed_loop(
    name: str,
    server: str,
    base_url: str,
    calls: Callable[[int, int], Call],
    *,
    clients: int,
    duration: float | None = None,
    per_client: int | None = None,
    warmup: int = 0,
    meter: CpuMeter | None = None,
) -> Outcome:
    """``clients`` threads, each on its own kept-alive connection, each sending ``calls(client, i)``
    for i = 0, 1, ... as fast as answers come, until ``duration`` seconds or ``per_client`` requests.

    ``warmup`` untimed requests per client first (``calls(client, -1)``, ...): they open the
    connections and warm the workers, and are not counted.
    """
    if duration is None and per_client is None:
        raise ValueError("give a duration or a request count")
    outcome = Outcome(name, server, clients=clients)
    lock = threading.Lock()
    box: dict[str, object] = {}

    def go() -> None:  # runs in one thread once all are at the barrier, before any is released
        box["cpu"] = meter.sample() if meter else None
        box["start"] = time.perf_counter()

    barrier = threading.Barrier(clients, action=go)
    ends: list[float] = []

    def client(index: int) -> None:
        latencies: list[float] = []
        problems: list[str] = []
        failed = 0
        with requests.Session() as session:
            for k in range(warmup):
                send(session, base_url, calls(index, -1 - k))
            barrier.wait()
            deadline = box["start"] + duration if duration is not None else math.inf
            seq = 0
            while (per_client is None or seq < per_client) and time.perf_counter() < deadline:
                call = calls(index, seq)
                started = time.perf_counter()
                problem = send(session, base_url, call)
                latencies.append(time.perf_counter() - started)
                if problem:
                    failed += 1
                    if len(problems) < ERROR_SAMPLES:
                        problems.append(problem)
                seq += 1
        with lock:
            ends.append(time.perf_counter())
            outcome.latencies.extend(latencies)
            outcome.errors += failed
            outcome.error_samples.extend(problems[: ERROR_SAMPLES - len(outcome.error_samples)])

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcome.wall = max(ends) - box["start"]
    if meter:
        outcome.cpu = CpuMeter.cores(box["cpu"], meter.sample(), outcome.wall)
    return outcome


def sequential(
    name: str,
    server: str,
    base_url: str,
    call: Call,
    *,
    count: int,
    keep_alive: bool,
    max_seconds: float = 8.0,
    meter: CpuMeter | None = None,
) -> Outcome:
    """One client, ``count`` requests (or ``max_seconds``) one after another: on one kept-alive
    connection, or on a fresh connection each (a new Session per request, closed after it).

    With ``meter``, the server's CPU per request unloaded: no queueing, no contention, so the
    steadiest measure of what a route costs."""
    outcome = Outcome(name, server, clients=1)
    session = requests.Session()
    send(session, base_url, call)  # connect, and warm the worker that accepted the connection
    before = meter.sample() if meter else None
    started = time.perf_counter()
    for _ in range(count):
        if time.perf_counter() - started > max_seconds:
            break  # plain MLflow's ~40 ms stalls would otherwise make this the longest scenario
        if not keep_alive:
            session.close()
            session = requests.Session()
        t0 = time.perf_counter()
        problem = send(session, base_url, call)
        outcome.latencies.append(time.perf_counter() - t0)
        if problem:
            outcome.errors += 1
            if len(outcome.error_samples) < ERROR_SAMPLES:
                outcome.error_samples.append(problem)
    outcome.wall = time.perf_counter() - started
    if meter:
        outcome.cpu = CpuMeter.cores(before, meter.sample(), outcome.wall)
    session.close()
    return outcome


def merged(parts: list[Outcome]) -> Outcome:
    """One outcome of several rounds of the same scenario on the same server."""
    out = Outcome(parts[0].name, parts[0].server, clients=parts[0].clients)
    for part in parts:
        out.latencies += part.latencies
        out.errors += part.errors
        out.error_samples += part.error_samples[: ERROR_SAMPLES - len(out.error_samples)]
        out.wall += part.wall
    if out.wall and all(part.cpu for part in parts):
        out.cpu = {k: sum(part.cpu[k] * part.wall for part in parts) / out.wall for k in parts[0].cpu}
    peaks = [part.db_connections for part in parts if part.db_connections is not None]
    out.db_connections = max(peaks) if peaks else None
    return out


# -- servers -----------------------------------------------------------------------------------


def store_uris(database_url: str) -> tuple[str, str]:
    """(hokusai store URI, plain store URI) of one PostgreSQL database.

    >>> store_uris("postgresql+psycopg2://postgres@127.0.0.1:5432/b")
    ('hokusai+postgresql://postgres@127.0.0.1:5432/b', 'postgresql+psycopg2://postgres@127.0.0.1:5432/b')
    """
    rest = database_url.split("://", 1)[1]
    return "hokusai+postgresql://" + rest, "postgresql+psycopg2://" + rest


class Servers:
    """Both servers on one database, each with its own port, artifact directory and log."""

    def __init__(self, database_url: str, workdir: Path, workers: int = 4) -> None:
        self.database_url = database_url
        hokusai_uri, plain_uri = store_uris(database_url)
        self.hokusai = MlflowServerProcess(
            hokusai_uri,
            str(workdir / "hokusai-artifacts"),
            workers=workers,
            app_name="hokusai",
            env={
                "HOKUSAI_AUTH": "none",
                "HOKUSAI_DEV_MODE": "1",
                "HOKUSAI_ATTESTER_KEY": ATTESTER_KEY,
                # One client address for all 32 clients: the per-IP limits would meter the benchmark.
                "HOKUSAI_RATELIMIT_ENABLED": "0",
            },
            log_path=workdir / "hokusai-server.log",
        )
        self.plain = MlflowServerProcess(
            plain_uri,
            str(workdir / "plain-artifacts"),
            workers=workers,
            log_path=workdir / "plain-server.log",
        )

    def __enter__(self) -> Servers:
        # The hokusai server first: it runs the plugin's migrations (a no-op on a seeded database).
        self.hokusai.start(timeout=180)
        try:
            self.plain.start(timeout=180)
        except BaseException:
            self.hokusai.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.plain.stop()
        self.hokusai.stop()

    @staticmethod
    def pgid(server: MlflowServerProcess) -> int | None:
        # MlflowServerProcess starts the server in a session of its own: its pid is the group id
        # of the uvicorn parent and its workers.
        process = getattr(server, "_process", None)
        return process.pid if process else None


# -- what to ask for ---------------------------------------------------------------------------


class Api:
    """Setup-time REST calls (not timed): raise on any failure."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.local = threading.local()

    @property
    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.session.request(method, self.base_url + path, timeout=120, **kwargs)
        if not response.ok:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else {}


@dataclass
class Targets:
    """The seeded things the scenarios ask for."""

    versions: list[tuple[str, str]]  # (name, version) for get-model-version
    search_names: list[str]  # models for search-model-versions
    registration_models: list[dict]  # name, latest version: one per client, for registrations


def discover(api: Api, summary: dict, clients: int, rng: random.Random) -> Targets:
    """Ordinary seeded models (``bench-pNN-mNNNN``) and their versions, through the REST API."""
    models, token = [], None
    while len(models) < 1000:
        params = {"filter": "name LIKE 'bench-p%'", "max_results": 1000}
        if token:
            params["page_token"] = token
        page = api.call("GET", MLFLOW_API + "/registered-models/search", params=params)
        for m in page.get("registered_models", []):
            latest = (
                max(int(v["version"]) for v in m.get("latest_versions", []))
                if m.get("latest_versions")
                else 0
            )
            if latest:
                models.append({"name": m["name"], "latest": latest})
        token = page.get("next_page_token")
        if not token:
            break
    if not models:
        raise SystemExit("no seeded models named bench-p* found: is this a benchmarks/seed.py database?")
    rng.shuffle(models)
    versions = [(m["name"], str(rng.randint(1, m["latest"]))) for m in models for _ in range(3)]
    rng.shuffle(versions)
    return Targets(
        versions=versions[:2000],
        search_names=[m["name"] for m in models[:200]],
        registration_models=[models[i % len(models)] for i in range(clients)],
    )


def improvement_plan(api: Api, model: dict, summary: dict) -> dict:
    """What an improved version over ``model``'s latest seeded version needs: its tags, its run's
    experiment, metric (a little better than the baseline's) and dataset digest."""
    name, baseline_version = model["name"], str(model["latest"])
    mv = api.call(
        "GET", MLFLOW_API + "/model-versions/get", params={"name": name, "version": baseline_version}
    )
    tags = {t["key"]: t["value"] for t in mv["model_version"].get("tags", [])}
    run = api.call("GET", MLFLOW_API + "/runs/get", params={"run_id": mv["model_version"]["run_id"]})["run"]
    metric = tags[T.BENCHMARK_METRIC]
    value = next(m["value"] for m in run["data"]["metrics"] if m["key"] == metric)
    step = -0.0007 if metric_direction(metric) == "lower" else 0.0007
    run_tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    contributors = [
        {"address": summary["heaviest_contributor"]["address"], "samples": 300},
        {"address": summary["other_contributor"], "samples": 100},
    ]
    return {
        "name": name,
        "experiment_id": run["info"]["experiment_id"],
        "metric": metric,
        "value": value + step,
        "dataset_digest": run_tags[T.BENCHMARK_DATASET_DIGEST],
        "tags": {
            T.PROJECT: tags[T.PROJECT],
            T.MODEL_TYPE: tags[T.MODEL_TYPE],
            T.BASELINE: f"{name}/{baseline_version}",
            T.BENCHMARK_METRIC: metric,
            T.CONTRIBUTORS: json.dumps(contributors),
        },
    }


def make_source_run(api: Api, plan: dict, label: str) -> str:
    """A finished run that logged the benchmark metric on the baseline's data, with a tiny model
    artifact (the server digests the version's files when it attests it)."""
    now = int(time.time() * 1000)
    run = api.call(
        "POST",
        MLFLOW_API + "/runs/create",
        json={
            "experiment_id": plan["experiment_id"],
            "start_time": now,
            "run_name": label,
            "tags": [{"key": T.BENCHMARK_DATASET_DIGEST, "value": plan["dataset_digest"]}],
        },
    )["run"]["info"]
    run_id = run["run_id"]
    api.call(
        "POST",
        MLFLOW_API + "/runs/log-batch",
        json={
            "run_id": run_id,
            "metrics": [{"key": plan["metric"], "value": plan["value"], "timestamp": now, "step": 0}],
        },
    )
    uri = run["artifact_uri"]
    if not uri.startswith("mlflow-artifacts:"):
        raise SystemExit(f"run artifact URI {uri}: expected the server's mlflow-artifacts:/ proxy")
    path = uri.split(":", 1)[1].lstrip("/")
    api.call(
        "PUT",
        f"/api/2.0/mlflow-artifacts/artifacts/{path}/model/MLmodel",
        data=TINY_MLMODEL,
        headers={"Content-Type": "application/octet-stream"},
    )
    api.call(
        "POST", MLFLOW_API + "/runs/update", json={"run_id": run_id, "status": "FINISHED", "end_time": now}
    )
    return run_id


def _signed(response: requests.Response) -> str | None:
    tags = {t["key"]: t["value"] for t in response.json()["model_version"].get("tags", [])}
    status = tags.get(T.ATTESTATION_STATUS)
    return None if status == T.STATUS_SIGNED else f"attestation status {status!r}, not signed"


# -- the scenarios -----------------------------------------------------------------------------


@dataclass
class Settings:
    clients: int = 32
    duration: float = 10.0
    warmup: int = 3
    register_per_client: int = 10
    sequential: int = 200  # requests of each single-client measurement (at most 8 s of them)
    rounds: int = 2  # alternating rounds of each hokusai-vs-plain comparison
    scenarios: tuple[str, ...] = ("keepalive", "mlflow", "hokusai", "register")


def run_scenarios(servers: Servers, summary: dict, settings: Settings, log=print) -> list[dict]:
    rng = random.Random(7)
    hok, plain = servers.hokusai, servers.plain
    meters = {"hokusai": CpuMeter(Servers.pgid(hok)), "plain": CpuMeter(Servers.pgid(plain))}
    urls = {"hokusai": hok.url, "plain": plain.url}
    targets = discover(Api(plain.url), summary, settings.clients, rng)
    results: list[dict] = []

    def record(outcome: Outcome) -> None:
        row = outcome.summary()
        results.append(row)
        log(
            f"  {row['scenario']:38} {row['server']:8} n={row['requests']:<6} err={row['errors']:<3} "
            f"p50={row['p50_ms']:>8} p95={row['p95_ms']:>8} p99={row['p99_ms']:>8} ms "
            f"{row['throughput_rps']:>8} req/s  cpu={row['cpu_cores']} db-conns={row['db_connections_peak']}"
        )
        for sample in row["error_samples"]:
            log(f"    error: {sample}")

    def measure(name: str, server: str, calls, **kwargs) -> Outcome:
        with ConnectionPeak(servers.database_url) as connections:
            outcome = closed_loop(
                name, server, urls[server], calls, clients=settings.clients, meter=meters[server], **kwargs
            )
        outcome.db_connections = connections.peak
        return outcome

    def loop(name: str, server: str, calls, **kwargs) -> None:
        record(measure(name, server, calls, **kwargs))

    def compare(name: str, calls, order: tuple[str, str]) -> None:
        """Both servers, in ``settings.rounds`` alternating rounds (A B B A ...) of an equal share
        of the duration: drift (PostgreSQL's cache, the machine) hits both alike, and each round
        deals the connections out to the workers afresh."""
        parts: dict[str, list[Outcome]] = {server: [] for server in order}
        for r in range(settings.rounds):
            for server in order if r % 2 == 0 else order[::-1]:
                parts[server].append(
                    measure(
                        name,
                        server,
                        calls,
                        duration=settings.duration / settings.rounds,
                        warmup=settings.warmup,
                    )
                )
        for server in order:
            record(merged(parts[server]))

    # Plain MLflow builds its stores in each worker at that worker's first request (~0.8 s; the
    # hokusai app builds them at start): new connections from many clients reach every worker, so
    # no measurement below pays for that.
    for server in ("hokusai", "plain"):
        closed_loop(
            "warm-up",
            server,
            urls[server],
            lambda c, i: Call(
                "GET",
                MLFLOW_API + "/model-versions/get",
                {"name": targets.versions[c][0], "version": targets.versions[c][1]},
                headers={"Connection": "close"},
            ),
            clients=settings.clients,
            per_client=3,
        )

    if "keepalive" in settings.scenarios:
        log("keep-alive: one client, sequential requests")
        name, version = targets.versions[0]
        get_one = Call("GET", MLFLOW_API + "/model-versions/get", {"name": name, "version": version})
        for label, call in (("/health", Call("GET", "/health")), ("get-model-version", get_one)):
            for server in ("hokusai", "plain"):
                for keep_alive in (True, False):
                    connection = "kept-alive connection" if keep_alive else "new connection each"
                    record(
                        sequential(
                            f"sequential {label}, {connection}",
                            server,
                            urls[server],
                            call,
                            count=settings.sequential,
                            keep_alive=keep_alive,
                            # Not /health: its CPU is so small that the servers' idle CPU over
                            # plain MLflow's stalled seconds would be most of what is measured.
                            meter=meters[server] if label != "/health" else None,
                        )
                    )

    if "mlflow" in settings.scenarios:
        log(f"MLflow routes, {settings.clients} clients, {settings.duration:g} s each")
        versions, names = targets.versions, targets.search_names

        def get_version(client: int, i: int) -> Call:
            name, version = versions[(client * 7919 + i) % len(versions)]
            return Call("GET", MLFLOW_API + "/model-versions/get", {"name": name, "version": version})

        def search_versions(client: int, i: int) -> Call:
            name = names[(client * 31 + i) % len(names)]
            return Call(
                "GET", MLFLOW_API + "/model-versions/search", {"filter": f"name='{name}'", "max_results": 100}
            )

        def get_version_fresh(client: int, i: int) -> Call:
            # "Connection: close": the server closes after answering and the client reconnects for
            # the next request, so plain MLflow's kept-alive stall is out of the comparison and
            # what remains is the plugin's own overhead.
            return replace(get_version(client, i), headers={"Connection": "close"})

        for label, calls in (
            ("get-model-version", get_version),
            ("get-model-version, new connection each", get_version_fresh),
            ("search-model-versions", search_versions),
        ):
            compare(label, calls, ("hokusai", "plain"))

    if "hokusai" in settings.scenarios:
        routes = [
            (f"lineage depth {depth}", f"{HOKUSAI_API}/models/{quote(entry['model_id'], safe='/')}/lineage")
            for depth, entry in sorted(summary["lineage"].items(), key=lambda kv: int(kv[0]))
        ]
        address = summary["heaviest_contributor"]["address"]
        routes.append(("contributor impact (heaviest)", f"{HOKUSAI_API}/contributors/{address}/impact"))
        log("Hokusai routes on the hokusai server, one client (the time of one request, unloaded)")
        for label, path in routes:
            record(
                sequential(
                    f"sequential {label}",
                    "hokusai",
                    hok.url,
                    Call("GET", path),
                    count=settings.sequential,
                    keep_alive=True,
                    meter=meters["hokusai"],
                )
            )
        log(f"Hokusai routes on the hokusai server, {settings.clients} clients, {settings.duration:g} s each")
        # The same load on a route that does nothing: what this machine allows any route at all.
        for label, path in [(FLOOR_SCENARIO, "/health"), *routes]:
            loop(
                label,
                "hokusai",
                lambda c, i, path=path: Call("GET", path),
                duration=settings.duration,
                warmup=settings.warmup,
            )

    if "register" in settings.scenarios:
        per = settings.register_per_client
        log(f"registration: preparing {settings.clients * per} source runs through the REST API (untimed)")
        api = Api(hok.url)
        started = time.perf_counter()
        with ThreadPoolExecutor(min(8, settings.clients)) as pool:
            plans = list(pool.map(lambda m: improvement_plan(api, m, summary), targets.registration_models))
            runs = list(
                pool.map(
                    lambda ci: make_source_run(api, plans[ci[0]], f"bench-register-{ci[0]}-{ci[1]}"),
                    [(c, i) for c in range(settings.clients) for i in range(per)],
                )
            )
        log(f"  {len(runs)} runs in {time.perf_counter() - started:.1f}s")
        run_of = {(c, i): runs[c * per + i] for c in range(settings.clients) for i in range(per)}

        def register_improved(client: int, i: int) -> Call:
            plan = plans[client]
            run_id = run_of[(client, i)]
            return Call(
                "POST",
                MLFLOW_API + "/model-versions/create",
                body={
                    "name": plan["name"],
                    "source": f"runs:/{run_id}/model",
                    "run_id": run_id,
                    "tags": [{"key": k, "value": v} for k, v in plan["tags"].items()],
                },
                check=_signed,
            )

        def create_plain(client: int, i: int) -> Call:
            plan = plans[client]
            run_id = run_of[(client, i)]
            return Call(
                "POST",
                MLFLOW_API + "/model-versions/create",
                body={"name": plan["name"], "source": f"runs:/{run_id}/model", "run_id": run_id},
            )

        log(f"registration, {settings.clients} clients x {per} each")
        loop("register improved version (signed)", "hokusai", register_improved, per_client=per)
        loop("create model version (no tags)", "plain", create_plain, per_client=per)
    return results


# -- the report --------------------------------------------------------------------------------


def machine(database_url: str) -> dict:
    import mlflow
    import uvicorn

    from mlflow_hokusai_plugin import __version__

    info = {
        "cores": os.cpu_count(),
        "cpu": None,
        "ram_gb": None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mlflow": mlflow.__version__,
        "uvicorn": uvicorn.__version__,
        "plugin": __version__,
        "postgresql": None,
    }
    try:
        with open("/proc/cpuinfo") as handle:
            info["cpu"] = next(
                (ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")), None
            )
        with open("/proc/meminfo") as handle:
            kb = next(int(ln.split()[1]) for ln in handle if ln.startswith("MemTotal"))
            info["ram_gb"] = round(kb / 1024 / 1024, 1)
    except (OSError, StopIteration):
        pass
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            info["postgresql"] = cur.fetchone()[0]
            cur.execute("SHOW max_connections")
            info["postgresql_max_connections"] = int(cur.fetchone()[0])
    finally:
        conn.close()
    return info


def _row(results: list[dict], scenario: str, server: str) -> dict | None:
    return next((r for r in results if r["scenario"] == scenario and r["server"] == server), None)


def comparisons(results: list[dict]) -> list[dict]:
    """hokusai / plain for each scenario both servers ran (and registration: signed vs plain)."""
    pairs = [(r["scenario"], r["scenario"]) for r in results if r["server"] == "hokusai"]
    pairs.append(("register improved version (signed)", "create model version (no tags)"))
    out = []
    for hokusai_name, plain_name in pairs:
        h, p = _row(results, hokusai_name, "hokusai"), _row(results, plain_name, "plain")
        if not h or not p:
            continue
        out.append(
            {
                "scenario": hokusai_name if hokusai_name == plain_name else f"{hokusai_name} vs {plain_name}",
                "p50_ratio": _ratio(h["p50_ms"], p["p50_ms"]),
                "p99_ratio": _ratio(h["p99_ms"], p["p99_ms"]),
                "throughput_ratio": _ratio(h["throughput_rps"], p["throughput_rps"]),
                "server_cpu_per_request_ratio": _ratio(
                    (h.get("cpu_ms_per_request") or {}).get("server"),
                    (p.get("cpu_ms_per_request") or {}).get("server"),
                ),
            }
        )
    return out


def _ratio(a, b) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def target_checks(results: list[dict]) -> list[dict]:
    """The issue's targets: met or not, and by how much."""
    checks = []
    for scenario in (
        "sequential get-model-version, kept-alive connection",
        "sequential get-model-version, new connection each",
        "get-model-version",
        "get-model-version, new connection each",
        "search-model-versions",
    ):
        h, p = _row(results, scenario, "hokusai"), _row(results, scenario, "plain")
        if h and p:
            for q in ("p50_ms", "p99_ms"):
                checks.append(
                    {
                        "target": f"{scenario} {q[:3]} through hokusai <= plain",
                        "value": f"{h[q]} ms vs {p[q]} ms ({_ratio(h[q], p[q])}x)",
                        "met": h[q] <= p[q],
                    }
                )
    for r in results:
        if r["server"] == "hokusai" and (
            r["scenario"] == "lineage depth 100" or r["scenario"].startswith("contributor impact")
        ):
            floor = _row(results, FLOOR_SCENARIO, "hokusai")
            checks.append(
                {
                    "target": f"{r['scenario']} p99 <= {TARGET_HOKUSAI_P99_MS:g} ms, {r['clients']} clients",
                    "value": f"{r['p99_ms']} ms"
                    + (f" (/health under the same load: {floor['p99_ms']} ms)" if floor else ""),
                    "met": r["p99_ms"] is not None and r["p99_ms"] <= TARGET_HOKUSAI_P99_MS,
                }
            )
    h = _row(results, "register improved version (signed)", "hokusai")
    p = _row(results, "create model version (no tags)", "plain")
    if h and p:
        ratio = _ratio(h["throughput_rps"], p["throughput_rps"])
        checks.append(
            {
                "target": f"register-with-attestation throughput >= {TARGET_REGISTER_RATIO:g} x plain create",
                "value": f"{h['throughput_rps']} vs {p['throughput_rps']} req/s ({ratio}x)",
                "met": ratio is not None and ratio >= TARGET_REGISTER_RATIO,
            }
        )
    errors = sum(r["errors"] for r in results)
    checks.append({"target": "zero errors", "value": str(errors), "met": errors == 0})
    return checks


def _fmt(value) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def markdown(report: dict) -> str:
    m, seed, s = report["machine"], report["seed"], report["settings"]
    counts, params = seed["counts"], seed["parameters"]
    checked = seed.get("check_seconds")
    lines = [
        "### Machine",
        "",
        f"- {m['cores']} cores ({m['cpu']}), {m['ram_gb']} GB RAM, Linux {m['kernel']}",
        f"- PostgreSQL {m['postgresql']}, Python {m['python']}, MLflow {m['mlflow']}, "
        f"uvicorn {m['uvicorn']}, mlflow-hokusai-plugin {m['plugin']}",
        f"- both servers `--workers {s['workers']}` on the same database; the driver, both servers and "
        "PostgreSQL share the machine",
        "",
        "### Seed",
        "",
        f"- {counts.get('model_versions')} model versions over {counts.get('registered_models')} "
        f"registered models in {params['projects']} projects; lineage chains up to depth "
        f"{params['max_depth']}; {params['contributors']} contributors, "
        f"{counts.get('hokusai_contributions')} contributions "
        f"({seed['heaviest_contributor']['contributions']} of them the heaviest contributor's)",
        f"- seeded in {seed['timings_seconds']['total']:.1f} s"
        + (f"; checked in {checked:.1f} s" if checked is not None else ""),
        "",
        "### Results",
        "",
        f"Closed loop: {s['clients']} clients, each on its own kept-alive connection, "
        f"{s['duration']:g} s per read scenario after {s['warmup']} warm-up requests per client; "
        f"hokusai-vs-plain rows: {s.get('rounds', 1)} alternating rounds each, merged; registrations: "
        f"{s['register_per_client']} per client. `sequential` rows: one client, up to {s['sequential']} "
        "requests one after another (at most 8 s). Cores: average cores used by the driver / the server "
        "under test / PostgreSQL; CPU ms/req: the server's and PostgreSQL's CPU time per request, which "
        "is what decides throughput once the 2 cores are saturated.",
        "",
        "| scenario | server | clients | requests | errors | p50 ms | p95 ms | p99 ms | req/s "
        "| cores drv/srv/pg | CPU ms/req srv/pg |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in report["results"]:
        cpu, per = r["cpu_cores"], r.get("cpu_ms_per_request") or {}
        cells = [r["scenario"], r["server"], r["clients"], r["requests"], r["errors"]]
        cells += [r[k] for k in ("p50_ms", "p95_ms", "p99_ms", "throughput_rps")]
        cells.append("/".join(_fmt(cpu.get(k)) for k in ("driver", "server", "postgres")) if cpu else "")
        cells.append("/".join(_fmt(per.get(k)) for k in ("server", "postgres")) if per else "")
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    if report["comparisons"]:
        lines += [
            "",
            "### hokusai / plain",
            "",
            "| scenario | p50 | p99 | throughput | server CPU per request |",
            "|---|--:|--:|--:|--:|",
        ]
        for c in report["comparisons"]:
            lines.append(
                f"| {c['scenario']} | {_fmt(c['p50_ratio'])} | {_fmt(c['p99_ratio'])} | "
                f"{_fmt(c['throughput_ratio'])} | {_fmt(c.get('server_cpu_per_request_ratio'))} |"
            )
    lines += ["", "### Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    errors = [(r["scenario"], r["server"], e) for r in report["results"] for e in r["error_samples"]]
    if errors:
        lines += ["", "### First errors", ""]
        lines += [f"- {scenario} ({server}): `{e[:200]}`" for scenario, server, e in errors[:10]]
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------------


def benchmark(
    summary: dict, database_url: str, settings: Settings, workdir: Path, workers: int = 4, log=print
) -> dict:
    info = machine(database_url)
    log(f"servers: --workers {workers} each on {database_url.rsplit('/', 1)[-1]}; logs in {workdir}")
    with Servers(database_url, workdir, workers) as servers:
        log(f"  hokusai {servers.hokusai.url}, plain {servers.plain.url}")
        results = run_scenarios(servers, summary, settings, log)
    return {
        "machine": info,
        "seed": {
            k: summary.get(k)
            for k in (
                "parameters",
                "counts",
                "improvements",
                "timings_seconds",
                "heaviest_contributor",
                "check_seconds",
            )
        },
        "settings": {**settings.__dict__, "scenarios": list(settings.scenarios), "workers": workers},
        "results": results,
        "comparisons": comparisons(results),
        "targets": target_checks(results),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--summary", type=Path, required=True, help="the JSON summary benchmarks/seed.py wrote")
    p.add_argument("--database-url", help="default: the summary's (a password is not in the summary)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per read scenario")
    p.add_argument(
        "--warmup", type=int, default=3, help="untimed requests per client before each read scenario"
    )
    p.add_argument("--register-per-client", type=int, default=10)
    p.add_argument("--sequential", type=int, default=200, help="requests per single-client measurement")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per hokusai-vs-plain comparison")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--scenarios", default="keepalive,mlflow,hokusai,register")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--markdown", type=Path, help="write the Markdown fragment here")
    p.add_argument("--workdir", type=Path, help="artifacts and server logs (default: a temporary directory)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    summary = json.loads(args.summary.read_text())
    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = set(scenarios) - set(Settings.scenarios)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; known: {', '.join(Settings.scenarios)}")
    settings = Settings(
        clients=args.clients,
        duration=args.duration,
        warmup=args.warmup,
        register_per_client=args.register_per_client,
        sequential=args.sequential,
        rounds=args.rounds,
        scenarios=scenarios,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hokusai-bench-"))
    report = benchmark(summary, args.database_url or summary["database_url"], settings, workdir, args.workers)
    text = markdown(report)
    print("\n" + text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results: {args.json}")
    if args.markdown:
        args.markdown.write_text(text)
        print(f"markdown: {args.markdown}")
    if not args.workdir and not any(r["errors"] for r in report["results"]):
        shutil.rmtree(workdir, ignore_errors=True)  # kept when something failed: the server logs are there
    return 0


if __name__ == "__main__":
    sys.exit(main())
