"""Fill a PostgreSQL database with a Hokusai model registry at benchmark scale, by bulk SQL.

    python benchmarks/seed.py --database-url postgresql+psycopg2://postgres@127.0.0.1:5432/hokusai_bench \\
        [--versions 100000 --models 1000 --projects 10 --max-depth 1000 \\
         --contributors 10000 --contributions 200000] --summary seed.json [--force] [--check]

What it makes (defaults in brackets):

- ``--projects`` projects [10], each with one MLflow experiment;
- ``--models`` registered models [1000] tagged ``hokusai.project``, holding ``--versions`` model
  versions [100000] in all (status READY, source ``runs:/<run>/model``), each with its own
  FINISHED source run that logged the benchmark metric (``metrics`` and ``latest_metrics``) and
  the run tag ``hokusai.benchmark.dataset_digest``;
- lineage: one model's versions form a single chain of depth ``--max-depth`` [1000]; when they
  fit under it, one model is a single chain of depth 10 and one of depth 100 (so a lineage query
  at those depths returns exactly that many edges); every other model's versions are cut into
  shorter chains (3 to 99 improvements). The root of a chain is a baseline; every other version
  is an improvement over the version before it, tagged as a Hokusai server leaves it
  (``hokusai.baseline``, ``hokusai.contributors``, ``hokusai.delta_one_bps``,
  ``hokusai.attestation.status=signed``, ``hokusai.attestation.id``, ``hokusai.attester``...),
  with one ``hokusai_lineage_edges`` row and one ``hokusai_attestations`` row;
- ``--contributors`` addresses [10000] and ``--contributions`` rows [200000] spread over the
  improvements, every improvement having at least one; one "heaviest" contributor is in
  ``--heaviest-share`` [5%] of all contributions, about 500 times the average of the others.

The schema is made the real way first (MLflow's SqlAlchemyStores run MLflow's Alembic
migrations; ``mlflow_hokusai_plugin.db.schema.upgrade`` runs ours), then every row goes in
with ``COPY FROM STDIN`` in one transaction, so a failed seed leaves no half-filled registry.

Synthetic attestations: every attestation document is built by the plugin's own code from the
facts the server would use (deltas, DeltaOne, attributed contributors, in-toto Statement, DSSE
envelope, id = sha256 of the payload), so it has the real shape and size, but it is NOT SIGNED:
its signature is 65 zero bytes and the document says ``"synthetic": true``. Signing 100k
documents is not what the benchmarks measure, and none of these documents verifies. This is
benchmark data only; never load it into a registry anyone trusts.

The audit log is left empty (its head row stays at genesis), so ``hokusai audit verify`` on the
seeded database still sees a consistent chain.

``--summary`` gets a JSON file with the counts, the time each phase took, and the ids the
benchmarks need: model ids at lineage depth 10, 100 and ``--max-depth``, the heaviest
contributor's address and expected totals, a few model names and search filters.
``--check`` then runs ``benchmarks/check_seed.py`` against the seeded database.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import random
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import make_url

from mlflow_hokusai_plugin import __version__ as PLUGIN_VERSION
from mlflow_hokusai_plugin.core import summary as md
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.addresses import to_checksum_address
from mlflow_hokusai_plugin.core.attestation import PAYLOAD_TYPE, attestation_document, build_statement
from mlflow_hokusai_plugin.core.canonical import canonical_json
from mlflow_hokusai_plugin.core.contributors import weights_from_samples
from mlflow_hokusai_plugin.core.issuance import improvement_statement_parts
from mlflow_hokusai_plugin.db.urls import database_url

WORKSPACE = "default"  # mlflow.utils.workspace_utils.DEFAULT_WORKSPACE_NAME: workspaces are off
PREFIX = "bench"
RUN_USER = "hokusai-bench"
# The project's model type decides its benchmark metric; rmse is lower-is-better, so both
# directions of the DeltaOne arithmetic are exercised.
METRIC_OF_TYPE = {
    "lead_scoring": "auroc",
    "classification": "accuracy",
    "regression": "rmse",
    "ranking": "precision",
}
LOWER_IS_BETTER = {"rmse"}
# Chain depths of the ordinary models, cycled: most registries improve a baseline a few times.
ORDINARY_DEPTHS = (3, 5, 10, 20, 50, 99)
FEATURED_DEPTHS = (10, 100)
# Each bulk round covers about this many versions: bounds memory (attestation documents are a few
# kB each) while keeping COPY batches large.
VERSIONS_PER_ROUND = 5000
# A fixed, obviously synthetic attester address (0x000...be7c4): no key signs for it.
ATTESTER = to_checksum_address("0x00000000000000000000000000000000000be7c4")
SYNTHETIC_SIGNATURE = base64.b64encode(bytes(65)).decode("ascii")
DAY_MS = 86_400_000


@dataclass
class ModelPlan:
    name: str
    project: str
    model_type: str
    metric: str
    versions: int
    chain_depth: int  # improvements per chain: a chain is 1 baseline + chain_depth improved versions


@dataclass
class Plan:
    projects: list[str]
    models: list[ModelPlan]
    featured: dict[int, str] = field(default_factory=dict)  # depth -> model name (single chain)

    @property
    def edges(self) -> int:
        return sum(improvements_of(m) for m in self.models)


def improvements_of(model: ModelPlan) -> int:
    chains = -(-model.versions // (model.chain_depth + 1))  # ceil: the last chain may be shorter
    return model.versions - chains


def plan_registry(versions: int, models: int, projects: int, max_depth: int) -> Plan:
    """Which model gets how many versions, in chains of what depth (no data yet)."""
    if projects < 1 or models < 1 or max_depth < 1:
        raise SystemExit("--projects, --models and --max-depth must be at least 1")
    project_names = [f"{PREFIX}-p{i:02d}" for i in range(projects)]
    featured = [max_depth] + [d for d in FEATURED_DEPTHS if d < max_depth]
    featured = featured[: max(1, models)]
    rest_models = models - len(featured)
    rest_versions = versions - sum(d + 1 for d in featured)
    if rest_versions < rest_models or (rest_models == 0 and rest_versions != 0):
        raise SystemExit(
            f"--versions {versions} cannot hold a chain of depth {max_depth} ({max_depth + 1} versions), "
            f"the featured chains {featured[1:]} and at least one version for each of the other "
            f"{rest_models} models"
        )
    plans = []
    for i in range(models):
        project = project_names[i % projects]
        model_type = T.MODEL_TYPES[(i % projects) % len(T.MODEL_TYPES)]
        if i < len(featured):
            depth = featured[i]
            plans.append(
                ModelPlan(
                    f"{PREFIX}-chain{depth}",
                    project,
                    model_type,
                    METRIC_OF_TYPE[model_type],
                    depth + 1,
                    depth,
                )
            )
            continue
        j = i - len(featured)
        count = rest_versions // rest_models + (1 if j < rest_versions % rest_models else 0)
        depth = min(ORDINARY_DEPTHS[j % len(ORDINARY_DEPTHS)], max_depth)
        plans.append(
            ModelPlan(f"{project}-m{i:04d}", project, model_type, METRIC_OF_TYPE[model_type], count, depth)
        )
    return Plan(project_names, plans, {d: plans[k].name for k, d in enumerate(featured)})


# -- database ----------------------------------------------------------------------------------


def sqlalchemy_url(url: str) -> str:
    plain = database_url(url)  # strips hokusai+, names psycopg2 for a bare postgresql://
    if not plain.startswith("postgresql"):
        raise SystemExit(f"{url}: the seed is for PostgreSQL only")
    return plain


def connect(url: str, database: str | None = None):
    parsed = make_url(url)
    return psycopg2.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname=database or parsed.database,
    )


def prepare_database(url: str, force: bool) -> str:
    """Create the database if missing; refuse one holding tables unless ``force`` (then wipe it).

    Returns what was done (created, reused, wiped). ``--force`` drops the ``public`` schema rather than
    the database, so a server left connected to it does not block the seed.
    """
    name = make_url(url).database
    admin = connect(url, "postgres")
    admin.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                return "created"
    finally:
        admin.close()
    conn = connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
            tables = cur.fetchone()[0]
            if tables and not force:
                raise SystemExit(
                    f"database {name!r} already has {tables} tables; pass --force to wipe it and seed again"
                )
            if tables:
                cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
                return "wiped (--force)"
    finally:
        conn.close()
    return "empty, reused"


def create_schema(url: str, artifact_root: str) -> None:
    """MLflow's tables by MLflow's own stores (their Alembic migrations), then the plugin's."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    from mlflow_hokusai_plugin.db.schema import upgrade

    tracking = TrackingStore(url, artifact_root)
    registry = RegistryStore(url)
    for store in (tracking, registry):
        store.engine.dispose()
    upgrade("hokusai+" + url)


# -- COPY --------------------------------------------------------------------------------------

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

# Column lists in the order rows are built below; names are quoted because some (key, value,
# timestamp) are SQL keywords.
COLUMNS = {
    "runs": (
        "run_uuid name source_type source_name entry_point_name user_id status start_time end_time "
        "deleted_time source_version lifecycle_stage artifact_uri experiment_id"
    ),
    "tags": "key value run_uuid",
    "metrics": "key value timestamp step is_nan run_uuid",
    "latest_metrics": "key value timestamp step is_nan run_uuid",
    "registered_models": "workspace name creation_time last_updated_time description",
    "registered_model_tags": "workspace name key value",
    "model_versions": (
        "workspace name version creation_time last_updated_time description user_id current_stage source "
        "storage_location run_id run_link status status_message"
    ),
    "model_version_tags": "workspace name version key value",
    "hokusai_attestations": "id model_id baseline_model_id attester status created_at document",
    "hokusai_lineage_edges": (
        "child_model_id parent_model_id project model_type benchmark_metric baseline_score_bps "
        "candidate_score_bps delta_one_bps metric_deltas attestation_id created_at"
    ),
    "hokusai_contributions": (
        "address model_id project weight_bps samples attributed_bps attestation_id created_at"
    ),
}
# Foreign keys decide the order: runs before their tags and metrics, registered models before
# their versions, versions before their tags, attestations before the contributions naming them.
TABLE_ORDER = tuple(COLUMNS)


def _copy_field(value) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    return str(value)  # int, or float (repr: the shortest decimal that reads back exactly)


class Copier:
    """Buffers rows per table and writes them with COPY, timing each table."""

    def __init__(self, cursor) -> None:
        self.cursor = cursor
        self.rows: dict[str, list[tuple]] = {table: [] for table in TABLE_ORDER}
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def flush(self) -> None:
        for table in TABLE_ORDER:
            rows = self.rows[table]
            if not rows:
                continue
            start = time.perf_counter()
            text = "".join("\t".join(map(_copy_field, row)) + "\n" for row in rows)
            columns = ", ".join(f'"{c}"' for c in COLUMNS[table].split())
            self.cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", io.StringIO(text))
            self.seconds[table] += time.perf_counter() - start
            self.counts[table] += len(rows)
            rows.clear()


# -- generation --------------------------------------------------------------------------------


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def iso_utc(epoch_ms: int) -> str:
    # Same format as the server's improvements.utc_iso.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms // 1000)) + f".{epoch_ms % 1000:03d}Z"


class ContributionPlan:
    """How many contributors each improvement gets, and which include the heaviest contributor.

    Every improvement needs at least one contributor (the tag is required), so ``contributions``
    must be at least the number of improvements; the rest are spread one extra at a time.
    """

    def __init__(self, rng: random.Random, edges: int, contributions: int, contributors: int, share: float):
        self.validate(edges, contributions, contributors)
        base, extra = divmod(contributions, edges)
        self.per_edge = bytearray([base]) * edges  # one byte each: 100k improvements, 100 kB
        for e in rng.sample(range(edges), extra):
            self.per_edge[e] += 1
        heavy = min(edges, max(1, round(contributions * share)))
        self.heavy = bytearray(edges)
        for e in rng.sample(range(edges), heavy):
            self.heavy[e] = 1

    @staticmethod
    def validate(edges: int, contributions: int, contributors: int) -> None:
        """Refuse impossible arguments before anything touches the database."""
        if contributions < edges:
            raise SystemExit(
                f"--contributions {contributions} is below the {edges} improvements: each needs at least one"
            )
        most = -(-contributions // edges)
        if contributors < 2 or most > contributors:
            raise SystemExit(
                f"--contributors {contributors} is too few: each improvement needs up to {most} distinct "
                "ones, and there must be the heaviest and at least one other"
            )
        if most > 40:
            # The version's description lists every contributor, and MLflow keeps descriptions in
            # 5000 characters.
            raise SystemExit(f"{most} contributors per improvement: at most 40 fit in a version description")


@dataclass
class Expected:
    """What the checks should find again, computed while generating."""

    heaviest_contributions: int = 0
    heaviest_attributed_bps: int = 0
    heaviest_projects: dict = field(default_factory=lambda: defaultdict(lambda: [0, 0]))


class Generator:
    def __init__(self, args, plan: Plan, experiments: dict[str, tuple[int, str]]) -> None:
        self.rng = random.Random(args.seed)
        self.plan = plan
        self.experiments = experiments
        self.artifact_root = args.artifact_root.rstrip("/")
        self.addresses = self._addresses(args.contributors)
        self.contrib = ContributionPlan(
            self.rng, plan.edges, args.contributions, args.contributors, args.heaviest_share
        )
        self.edge_index = 0
        self.expected = Expected()
        # Registration times: the last year up to now, each model over half of it.
        self.t0 = int(time.time() * 1000) - 365 * DAY_MS
        self.digests = {p: sha256_hex(f"synthetic benchmark dataset of {p}") for p in plan.projects}

    def _addresses(self, count: int) -> list[str]:
        # Random 20 bytes, EIP-55 checksummed as the plugin stores them; index 0 is the heaviest.
        rng = random.Random(self.rng.getrandbits(64))
        return [
            to_checksum_address("0x" + rng.getrandbits(160).to_bytes(20, "big").hex()) for _ in range(count)
        ]

    def model(self, m: ModelPlan, out: dict[str, list[tuple]]) -> None:
        rng = self.rng
        exp_id, exp_location = self.experiments[m.project]
        lower = m.metric in LOWER_IS_BETTER
        # Improvements of a few bps up to a few hundred; deep chains take small steps so that 1000
        # of them keep the metric in a plausible range (at most 0.3 gained along any chain).
        max_step = max(3, min(300, 3000 // m.chain_depth))
        start = self.t0 + rng.randint(0, 180 * DAY_MS)
        spacing = max(1000, (180 * DAY_MS) // m.versions)
        previous = None  # (model_id, run_id, value, artifact_digest, score_bps) of the version before
        for v in range(1, m.versions + 1):
            model_id = f"{m.name}/{v}"
            created = start + (v - 1) * spacing + rng.randint(0, spacing // 2)
            run_id = f"{rng.getrandbits(128):032x}"
            position = (v - 1) % (m.chain_depth + 1)
            if position == 0:  # a baseline starts the chain
                score = (
                    rng.randint(5000, 7000) + max_step * m.chain_depth if lower else rng.randint(2000, 4000)
                )
            else:
                step = rng.randint(1, max_step)
                score = previous[4] - step if lower else previous[4] + step
            value = score / 10000  # repr() gives back exactly `score` bps (to_bps rounds the decimal)
            digest = sha256_hex(f"synthetic model artifacts of {model_id}")
            run_name = f"{m.name}-v{v}"
            out["runs"].append(
                (
                    run_id, run_name, "LOCAL", "benchmarks/seed.py", None, RUN_USER, "FINISHED",
                    created - 600_000, created - 60_000, None, None, "active",
                    f"{exp_location}/{run_id}/artifacts", exp_id,
                )
            )  # fmt: skip
            for key, tag_value in (
                ("mlflow.runName", run_name),
                ("mlflow.user", RUN_USER),
                ("mlflow.source.name", "benchmarks/seed.py"),
                ("mlflow.source.type", "LOCAL"),
                (T.BENCHMARK_DATASET_DIGEST, self.digests[m.project]),
            ):
                out["tags"].append((key, tag_value, run_id))
            out["metrics"].append((m.metric, value, created - 61_000, 0, False, run_id))
            out["latest_metrics"].append((m.metric, value, created - 61_000, 0, False, run_id))
            source = f"runs:/{run_id}/model"
            tags = {
                T.PROJECT: m.project,
                T.MODEL_TYPE: m.model_type,
                T.BENCHMARK_METRIC: m.metric,
                # What the server digests the first time a version is attested or named as a
                # baseline; present here so registering against a seeded baseline needs no artifacts.
                T.ARTIFACT_DIGEST: digest,
            }
            if position == 0:
                tags[T.ATTESTATION_STATUS] = T.STATUS_NOT_APPLICABLE
                description = md.baseline_markdown(
                    project=m.project, model_type=m.model_type, benchmark_metric=m.metric
                )
            else:
                description = self._improvement(
                    m, model_id, run_id, value, digest, created, previous, tags, out
                )
            out["model_versions"].append(
                (
                    WORKSPACE, m.name, v, created, created + 60, description, None, "None", source,
                    source, run_id, None, "READY", None,
                )
            )  # fmt: skip
            out["model_version_tags"].extend((WORKSPACE, m.name, v, k, val) for k, val in tags.items())
            previous = (model_id, run_id, value, digest, score)
        out["registered_models"].append((WORKSPACE, m.name, start, created + 60, None))
        out["registered_model_tags"].append((WORKSPACE, m.name, T.PROJECT, m.project))

    def _improvement(self, m, model_id, run_id, value, digest, created, previous, tags, out) -> str:
        rng = self.rng
        parent_id, parent_run, parent_value, parent_digest, _ = previous
        e = self.edge_index
        self.edge_index += 1
        count = self.contrib.per_edge[e]
        chosen = [0] if self.contrib.heavy[e] else []
        while len(chosen) < count:
            pick = rng.randrange(1, len(self.addresses))
            if pick not in chosen:
                chosen.append(pick)
        rng.shuffle(chosen)
        samples = [rng.randint(100, 5000) for _ in chosen]
        weights = weights_from_samples(samples)
        contributors = [
            {"address": self.addresses[c], "weight_bps": w, "samples": s}
            for c, w, s in zip(chosen, weights, samples, strict=True)
        ]
        at = created + 50  # the server records the improvement just after MLflow's write
        improvement, attributed, predicate = improvement_statement_parts(
            model_id=model_id,
            baseline_model_id=parent_id,
            benchmark_metric=m.metric,
            contributors=contributors,
            baseline_metrics={m.metric: parent_value},
            candidate_metrics={m.metric: value},
            baseline_run_id=parent_run,
            run_id=run_id,
            dataset_digest=self.digests[m.project],
            model_digest=digest,
            baseline_digest=parent_digest,
            created_at=iso_utc(at),
            plugin_version=PLUGIN_VERSION,
            project=m.project,
            model_type=m.model_type,
        )
        statement = build_statement(f"models:/{model_id}", digest, predicate)
        envelope = {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(canonical_json(statement)).decode("ascii"),
            "signatures": [{"keyid": ATTESTER, "sig": SYNTHETIC_SIGNATURE}],
        }
        document = attestation_document(
            envelope=envelope,
            model_id=model_id,
            baseline_model_id=parent_id,
            attester=ATTESTER,
            created_at=iso_utc(at),
        )
        document["synthetic"] = True
        document["synthetic_note"] = "hokusai benchmark seed data: not signed, the signature is 65 zero bytes"
        attestation_id = document["id"]
        delta_one = improvement["delta_one_bps"]
        out["hokusai_attestations"].append(
            (
                attestation_id,
                model_id,
                parent_id,
                ATTESTER,
                T.STATUS_SIGNED,
                at,
                canonical_json(document).decode(),
            )
        )
        out["hokusai_lineage_edges"].append(
            (
                model_id, parent_id, m.project, m.model_type, m.metric, improvement["baseline_score_bps"],
                improvement["candidate_score_bps"], delta_one,
                canonical_json(improvement["metric_deltas"]).decode(), attestation_id, at,
            )
        )  # fmt: skip
        for entry in attributed:
            out["hokusai_contributions"].append(
                (
                    entry["address"], model_id, m.project, entry["weight_bps"], entry["samples"],
                    entry["attributed_bps"], attestation_id, at,
                )
            )  # fmt: skip
            if entry["address"] == self.addresses[0]:
                self.expected.heaviest_contributions += 1
                self.expected.heaviest_attributed_bps += entry["attributed_bps"]
                per_project = self.expected.heaviest_projects[m.project]
                per_project[0] += 1
                per_project[1] += entry["attributed_bps"]
        # Client-written tags (the contributor list as a client sends it: samples, not weights),
        # then what the server writes back once the attestation is stored.
        tags[T.BASELINE] = parent_id
        tags[T.CONTRIBUTORS] = json.dumps(
            [{"address": c["address"], "samples": c["samples"]} for c in contributors]
        )
        tags[T.DELTA_ONE_BPS] = str(delta_one)
        tags[T.ATTESTATION_ID] = attestation_id
        tags[T.ATTESTER] = ATTESTER
        tags[T.ATTESTATION_STATUS] = T.STATUS_SIGNED
        return md.improvement_markdown(
            baseline_model_id=parent_id,
            benchmark_metric=m.metric,
            metric_deltas=improvement["metric_deltas"],
            delta_one_bps=delta_one,
            contributors=attributed,
            attestation_id=attestation_id,
        )


# -- main --------------------------------------------------------------------------------------


def create_experiments(cursor, projects: list[str], artifact_root: str) -> dict[str, tuple[int, str]]:
    now = int(time.time() * 1000)
    experiments = {}
    for project in projects:
        cursor.execute(
            "INSERT INTO experiments (name, workspace, lifecycle_stage, creation_time, last_update_time) "
            "VALUES (%s, %s, 'active', %s, %s) RETURNING experiment_id",
            (f"{PREFIX}-{project}", WORKSPACE, now, now),
        )
        exp_id = cursor.fetchone()[0]
        # MLflow names an experiment's location after its id, known only once inserted.
        location = f"{artifact_root.rstrip('/')}/{exp_id}"
        cursor.execute(
            "UPDATE experiments SET artifact_location = %s WHERE experiment_id = %s", (location, exp_id)
        )
        experiments[project] = (exp_id, location)
    return experiments


# The server keeps these totals as it records each improvement; a bulk seed derives them at once,
# in the same transaction, as migration 0004 does for an existing database.
_CONTRIBUTOR_TOTALS = (
    "INSERT INTO hokusai_contributor_totals (address, project, models_improved, attributed_bps,"
    " first_contribution, last_contribution)"
    " SELECT address, project, count(*), sum(attributed_bps), min(created_at), max(created_at)"
    " FROM hokusai_contributions GROUP BY address, project"
)


def seed(args) -> dict:
    timings: dict = {}
    overall = time.perf_counter()
    url = sqlalchemy_url(args.database_url)
    plan = plan_registry(args.versions, args.models, args.projects, args.max_depth)
    ContributionPlan.validate(plan.edges, args.contributions, args.contributors)

    start = time.perf_counter()
    prepared = prepare_database(url, args.force)
    timings["prepare_database"] = time.perf_counter() - start
    print(f"database {make_url(url).database}: {prepared}", flush=True)

    start = time.perf_counter()
    create_schema(url, args.artifact_root)
    timings["schema"] = time.perf_counter() - start
    print(f"schema (MLflow and plugin migrations): {timings['schema']:.1f}s", flush=True)

    conn = connect(url)
    generate_seconds = 0.0
    try:
        with conn.cursor() as cursor:
            experiments = create_experiments(cursor, plan.projects, args.artifact_root)
            generator = Generator(args, plan, experiments)
            copier = Copier(cursor)
            pending = 0
            done = 0
            for m in plan.models:
                start = time.perf_counter()
                generator.model(m, copier.rows)
                generate_seconds += time.perf_counter() - start
                pending += m.versions
                done += m.versions
                if pending >= VERSIONS_PER_ROUND:
                    copier.flush()
                    pending = 0
                    print(f"  {done}/{args.versions} versions", flush=True)
            copier.flush()
            start = time.perf_counter()
            cursor.execute(_CONTRIBUTOR_TOTALS)
            timings["contributor_totals"] = time.perf_counter() - start
        start = time.perf_counter()
        conn.commit()
        timings["commit"] = time.perf_counter() - start
    finally:
        conn.close()
    timings["generate"] = generate_seconds
    timings["copy"] = dict(copier.seconds)
    timings["copy_total"] = sum(copier.seconds.values())

    conn = connect(url)
    conn.autocommit = True  # ANALYZE of the whole database, and counts, outside a transaction
    try:
        with conn.cursor() as cursor:
            start = time.perf_counter()
            cursor.execute("ANALYZE")
            timings["analyze"] = time.perf_counter() - start
            counts = {}
            for table in ("experiments", *TABLE_ORDER):
                cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                counts[table] = cursor.fetchone()[0]
    finally:
        conn.close()
    timings["total"] = time.perf_counter() - overall
    return build_summary(args, url, plan, generator, counts, timings)


def build_summary(args, url, plan: Plan, generator: Generator, counts: dict, timings: dict) -> dict:
    lineage = {}
    for depth, name in sorted(plan.featured.items()):
        # The leaf of a single chain: its lineage (either direction, or both) is exactly `depth` edges.
        lineage[str(depth)] = {"model_id": f"{name}/{depth + 1}", "name": name, "edges": depth}
    ordinary = [m for m in plan.models if m.name not in plan.featured.values()]
    samples = [
        {"name": m.name, "project": m.project, "versions": m.versions, "chain_depth": m.chain_depth}
        for m in (ordinary[:5] or plan.models[:5])
    ]
    expected = generator.expected
    return {
        "database_url": make_url(url).render_as_string(hide_password=True),
        "parameters": {
            "versions": args.versions,
            "models": args.models,
            "projects": args.projects,
            "max_depth": args.max_depth,
            "contributors": args.contributors,
            "contributions": args.contributions,
            "heaviest_share": args.heaviest_share,
            "seed": args.seed,
            "artifact_root": args.artifact_root,
        },
        "synthetic_attestations": True,
        "counts": counts,
        "improvements": plan.edges,
        "timings_seconds": timings,
        "lineage": lineage,
        "deep_model": plan.featured[args.max_depth],
        "heaviest_contributor": {
            "address": generator.addresses[0],
            "contributions": expected.heaviest_contributions,
            "attributed_bps": expected.heaviest_attributed_bps,
            "projects": {
                p: {"models_improved": c, "attributed_bps": b}
                for p, (c, b) in expected.heaviest_projects.items()
            },
        },
        "other_contributor": generator.addresses[1],
        "attester": ATTESTER,
        "projects": plan.projects,
        "models": samples,
        "sample_version": {"name": samples[0]["name"], "version": str(min(2, samples[0]["versions"]))},
        "search_filters": [
            f"name = '{samples[0]['name']}'",
            f"name = '{plan.featured[args.max_depth]}'",
            f"tags.`{T.PROJECT}` = '{plan.projects[0]}'",
        ],
    }


def print_report(summary: dict) -> None:
    t = summary["timings_seconds"]
    print("\nphase                      seconds")
    for phase in (
        "prepare_database",
        "schema",
        "generate",
        "copy_total",
        "contributor_totals",
        "commit",
        "analyze",
    ):
        print(f"  {phase:24} {t[phase]:8.2f}")
    for table, seconds in t["copy"].items():
        print(f"    copy {table:26} {seconds:8.2f}  ({summary['counts'][table]} rows)")
    print(f"  {'total':24} {t['total']:8.2f}")
    print("\ntotals: " + ", ".join(f"{k}={v}" for k, v in summary["counts"].items()))
    h = summary["heaviest_contributor"]
    print(
        f"heaviest contributor {h['address']}: {h['contributions']} contributions, {h['attributed_bps']} bps"
    )
    for depth, entry in summary["lineage"].items():
        print(f"lineage depth {depth}: {entry['model_id']}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--database-url", required=True, help="postgresql+psycopg2://user@host:port/db (created if missing)"
    )
    p.add_argument("--versions", type=int, default=100_000)
    p.add_argument("--models", type=int, default=1000)
    p.add_argument("--projects", type=int, default=10)
    p.add_argument("--max-depth", type=int, default=1000, help="depth of the deepest lineage chain")
    p.add_argument("--contributors", type=int, default=10_000)
    p.add_argument("--contributions", type=int, default=200_000)
    p.add_argument(
        "--heaviest-share",
        type=float,
        default=0.05,
        help="share of all contributions that are the heaviest's",
    )
    p.add_argument(
        "--artifact-root",
        default="mlflow-artifacts:/",
        help="experiments' artifact root (default: what `mlflow server --artifacts-destination` uses)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=7,
        help="random seed: same names, chains, scores and contributors (times follow the clock)",
    )
    p.add_argument("--summary", type=Path, help="write the JSON summary here")
    p.add_argument("--force", action="store_true", help="wipe a non-empty database (drops its public schema)")
    p.add_argument("--check", action="store_true", help="then check the seed with benchmarks/check_seed.py")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    summary = seed(args)
    print_report(summary)
    if args.summary:
        args.summary.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"summary: {args.summary}")
    if args.check:
        try:
            from benchmarks.check_seed import check
        except ImportError:  # run as `python benchmarks/seed.py`: this directory is on sys.path
            from check_seed import check
        return check(sqlalchemy_url(args.database_url), summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
