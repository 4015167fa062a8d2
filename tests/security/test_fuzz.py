"""Property-based fuzzing of the routes, on a real 2-worker server on PostgreSQL (API-key mode).

The routes: every registry route of ``permissions.MLFLOW_ROUTES`` (targets MODEL, MODEL_CREATE,
MODEL_SEARCH) and GraphQL (UNSCOPED), a sample of the shared tracking routes (runs, experiments,
artifacts, logged models, metrics) and every Hokusai route of ``route_table.OPERATIONS``, under both
prefixes. Hypothesis makes each request whole:

- the method: a declared one, or any other (HEAD, OPTIONS, TRACE, PROPFIND, a made-up one);
- the path: path parameters as real targets, unicode, ``..``, ``%00``, slashes, very long text;
- the query string: the route's field names and the usual ones (``name``, ``version``, ``key``,
  ``model_id``, ``filter``, ``max_results``, ``page_token``), repeated, with unicode, NUL and broken
  percent escapes;
- the body: the route's fields with values of wrong types and sizes, JSON wrapped in a JSON string,
  nesting up to 300 levels, invalid UTF-8, UTF-16, empty, ``NaN`` / ``Infinity`` / ``1e999``
  literals, integers of thousands of digits, form data;
- the content type (JSON with charsets, text, none, form, protobuf, garbage) and the headers: each
  key as a bearer token, ``X-API-Key`` or basic auth, no key, malformed ``Authorization`` and
  ``X-API-Key`` values, garbage ``Idempotency-Key``.

Every answer: below 500; an error on ``/api/`` or ``/ajax-api/`` in MLflow's shape
``{"error_code", "message"}``; within the time bound of ``attack.send``; never a 2xx on a write
route for a read key or no key. Keys that may write aim at models and runs of their own
(the unscoped ones at scratch models, the key scoped to project A at A's and B's models), so
afterwards project B's model, its plugin rows and a run only keys that cannot write aim at must be
as they were, every audit entry since the start written by a key that may write and none about B,
the server's worker processes the same and ``/health/ready`` 200.

Requests name real objects through tokens (``{run:victim}``...) replaced when sent, so a failing
example printed by Hypothesis can be pasted as it is into :func:`test_regressions`.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import mlflow
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.api_keys import display_prefix
from mlflow_hokusai_plugin.server import routes
from mlflow_hokusai_plugin.server.permissions import ADMIN, MLFLOW_ROUTES, WRITE, Target, route_key
from mlflow_hokusai_plugin.server.route_table import OPERATIONS
from tests.integration.test_auth import make_key
from tests.integration.test_server_plugin import create_version, log_candidate, mlflow_env, sql
from tests.integration.test_services import ALICE
from tests.security.attack import Answer, assert_workers_alive, send, worker_pids

# Examples per route (49 routes): ~800 requests, about 40 s of fuzzing on 2 cores (the server's start
# and the seeding take as long again). HOKUSAI_FUZZ_EXAMPLES=100 for a deeper run by hand.
EXAMPLES_PER_ROUTE = int(os.environ.get("HOKUSAI_FUZZ_EXAMPLES", "16"))
BOB = "0x" + "b0b" * 13 + "b"

# -- the routes -----------------------------------------------------------------------------------

REGISTRY_TARGETS = {Target.MODEL, Target.MODEL_CREATE, Target.MODEL_SEARCH, Target.UNSCOPED}
SHARED_SAMPLE = {
    "mlflow/runs/get",
    "mlflow/runs/search",
    "mlflow/runs/set-tag",
    "mlflow/runs/log-metric",
    "mlflow/runs/log-batch",
    "mlflow/experiments/get",
    "mlflow/experiments/get-by-name",
    "mlflow/experiments/search",
    "mlflow/experiments/create",
    "mlflow/artifacts/list",
    "mlflow/logged-models/search",
    "mlflow/logged-models/<model_id>",
    "mlflow/metrics/get-history",
    "mlflow/metrics/get-history-bulk-interval",
}
# Fields of the routes that have no protobuf request.
EXTRA_FIELDS = {
    "/model-versions/get-artifact": ("name", "version", "path"),
    "/graphql": ("query", "variables", "operationName"),
}
KNOWN_PARAMS = ("name", "version", "key", "model_id", "filter", "max_results", "page_token")
OTHER_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "FUZZ")
_PATH_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@dataclass(frozen=True)
class Route:
    key: str  # the permissions table's key (MLflow) or the Hokusai rule
    roles: tuple[tuple[str, str], ...]  # (declared method, role it needs)
    paths: tuple[str, ...]  # Flask rules under both prefixes
    fields: tuple[str, ...]

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(method for method, _ in self.roles)

    def role(self, method: str) -> str | None:
        method = "GET" if method == "HEAD" else method
        return dict(self.roles).get(method)

    def __str__(self) -> str:
        return self.key


def _protobuf_fields() -> dict[tuple[str, str], tuple[str, ...]]:
    """(method, route key) -> the field names of MLflow's protobuf request of the route."""
    from mlflow.protos import databricks_pb2
    from mlflow.protos.model_registry_pb2 import ModelRegistryService
    from mlflow.protos.service_pb2 import MlflowService
    from mlflow.server.handlers import _get_paths

    found = {}
    for service in (MlflowService, ModelRegistryService):
        for method in service.DESCRIPTOR.methods:
            for endpoint in method.GetOptions().Extensions[databricks_pb2.rpc].endpoints:
                for path in _get_paths(endpoint.path, version=endpoint.since.major):
                    fields = tuple(field.name for field in method.input_type.fields)
                    found[(endpoint.method, route_key(path))] = fields
    return found


def _routes() -> list[Route]:
    protobuf = _protobuf_fields()
    grouped: dict[str, dict] = {}
    for (method, key), rule in MLFLOW_ROUTES.items():
        if rule.target not in REGISTRY_TARGETS and key not in SHARED_SAMPLE:
            continue
        entry = grouped.setdefault(key, {"roles": [], "fields": list(EXTRA_FIELDS.get(key, ()))})
        entry["roles"].append((method, rule.role))
        entry["fields"] += [f for f in protobuf.get((method, key), ()) if f not in entry["fields"]]
    found = [
        Route(
            key,
            tuple(entry["roles"]),
            (key,) if key.startswith("/") else (f"/api/2.0/{key}", f"/ajax-api/2.0/{key}"),
            tuple(entry["fields"]),
        )
        for key, entry in grouped.items()
    ]
    hokusai: dict[str, dict] = {}
    for op in OPERATIONS:
        entry = hokusai.setdefault(op.rule, {"roles": [], "fields": []})
        entry["roles"].append((op.method.upper(), op.access.role))
        for model in (op.request, op.query):
            if model is not None:
                entry["fields"] += [f for f in model.model_fields if f not in entry["fields"]]
    found += [
        Route("hokusai" + rule, tuple(entry["roles"]), routes.both(rule), tuple(entry["fields"]))
        for rule, entry in hokusai.items()
    ]
    return found


ROUTES = _routes()

# -- what requests name ---------------------------------------------------------------------------

# Keys that may write; they aim only at objects of their own (see _targets).
WRITERS = ("admin", "write", "write_a")
CREDENTIALS = ("admin", "write", "write_a", "read", "none")


@dataclass(frozen=True)
class Raw:
    """A JSON fragment written as it is: NaN, Infinity, 1e999, a number of thousands of digits."""

    text: str


def _targets(credential: str) -> dict[str, list]:
    """The real objects a request with ``credential`` names, by field (tokens replaced when sent)."""
    if credential in ("admin", "write"):
        names, projects, tracking = ["fuzz-scratch", "fuzz-free"], ["proj-c"], "scratch"
    elif credential == "write_a":
        names, projects, tracking = ["fuzz-a", "fuzz-b"], ["proj-a", "proj-b"], "scratch"
    else:
        names, projects, tracking = ["fuzz-a", "fuzz-b", "fuzz-scratch"], ["proj-a", "proj-b"], "victim"
    run, exp, logged = f"{{run:{tracking}}}", f"{{exp:{tracking}}}", f"{{logged:{tracking}}}"
    model_ids = [f"{name}/{version}" for name in names for version in (1, 2)]
    contributors = [{"address": ALICE, "weight_bps": 10000}]
    # Names that look like B's (only keys that may not write to B use them).
    lookalikes = [] if credential in ("admin", "write") else ["fuzz-b\x00", "FUZZ-B", "fuzz-b ", "fuzz-b%"]
    return {
        "name": names + lookalikes + ["fuzz-new"],
        "new_name": names + ["fuzz-renamed"],
        "version": ["1", "2", "3", "0", "-1", "01", "1.5"],
        "run_id": [run],
        "run_uuid": [run],
        "run_ids": [[run], [run, run]],
        "experiment_id": [exp, "0"],
        "experiment_ids": [[exp], [exp, "0"]],
        "experiment_name": [f"fuzz-{tracking}", "Default"],
        "model_id": [logged, *model_ids],
        "source": [f"models:/{logged}", f"runs:/{run}/model", "s3://elsewhere/x", "file:///etc"],
        "model_uri": [f"runs:/{run}/model", f"models:/{logged}", f"models:/{model_ids[0]}"],
        "baseline": model_ids,
        "project": projects,
        "model_type": ["classification", "regression", "other"],
        "benchmark_metric": ["accuracy", "f1"],
        "contributors": [contributors, [{"address": BOB, "samples": 10}], json.dumps(contributors)],
        "key": [T.PROJECT, T.BASELINE, T.ATTESTATION_STATUS, T.CONTRIBUTORS, "team", "mlflow.user"],
        "value": [*projects, "signed", model_ids[0], json.dumps(contributors)],
        "tags": [
            [{"key": T.PROJECT, "value": projects[0]}],
            [{"key": T.ATTESTATION_STATUS, "value": "signed"}],
        ],
        "filter": [
            "name = 'fuzz-b'",
            "name LIKE '%'",
            "tags.`hokusai.project` = 'proj-b'",
            f"attributes.run_id = '{run}'",
            "metrics.accuracy > 0.5",
            "name = 'x' OR 1=1",
            "'",
        ],
        "stage": ["Production", "Archived", "None", "bogus"],
        "alias": ["champion", "latest", "v1"],
        "direction": ["upstream", "downstream", "both", "sideways"],
        "address": [ALICE, ALICE.lower(), BOB, "0x" + "0" * 40, "0xZZ"],
        "attesters": [[ALICE], [], [ALICE, ALICE]],
        "attestation_id": ["{att:a}", "{att:b}", "0" * 64],
        "document": [{}, {"dsse": {}}, {"payloadType": "x", "payload": "!!", "signatures": [{}]}],
        "role": ["read", "write", "admin", "root"],
        "metric_key": ["accuracy"],
        "path": ["MLmodel", "../../../etc/passwd", "model/MLmodel"],
        "query": [
            "{__typename}",
            'query { mlflowSearchModelVersions(input: {filter: ""}) { modelVersions { name version } } }',
            f'{{ mlflowGetRun(input: {{runId: "{run}"}}) {{ run {{ info {{ runId }} }} }} }}',
            "{__schema{types{name fields{name}}}}",
            "{" * 60 + "}" * 60,
            "mutation { x }",
        ],
        "metrics": [[{"key": "accuracy", "value": 0.9, "timestamp": 1, "step": 0}]],
        "params": [[{"key": "p", "value": "v"}]],
    }


# The revoke route's <int:key_id> never names a key of this module: an admin revoking one would
# turn the rest of the run into 401s.
KEY_IDS = st.one_of(st.integers(min_value=10_000).map(str), st.sampled_from(["0", "-1", "x", "9" * 30]))

_TEXT = st.text(max_size=24)
_ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "..",
        "../..",
        "%00",
        "'",
        "\"'; DROP TABLE registered_models; --",
        "名前",
        "🙂",
        "e\u0301",
        "\u202e",
        "null",
        "NaN",
        "1.0",
        "1e3",
        "a/b",
    ]
)
_LONG_TEXT = st.builds(
    lambda char, size: char * size,
    st.sampled_from(["a", "é", "💥", "\x00", "/", "%"]),
    st.sampled_from([256, 257, 1001, 6001, 70_000]),
)
# In a URL, shorter: uvicorn's HTTP parser (h11) refuses a request head beyond its buffer itself
# (400 text/plain, connection closed: no application code runs), as nginx answers 414.
URL_LIMIT = 12_000
_LONG_URL_TEXT = st.builds(
    lambda char, size: char * size,
    st.sampled_from(["a", "é", "💥", "\x00", "/", "%"]),
    st.sampled_from([256, 257, 1001]),
)
_NUMBERS = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 10**30]),
    st.floats(),  # NaN and infinities included: json.dumps writes them as NaN / Infinity
    st.sampled_from([Raw("1e999"), Raw("-1e999"), Raw("NaN"), Raw("-Infinity"), Raw("1" * 5000), Raw("-0")]),
)


def _scalar(values: list, long: st.SearchStrategy = _LONG_TEXT) -> st.SearchStrategy:
    parts = [_TEXT, _ODD_TEXT, long, _NUMBERS, st.booleans(), st.none()]
    return st.one_of(st.sampled_from(values), *parts) if values else st.one_of(*parts)


def _value(field: str, targets: dict) -> st.SearchStrategy:
    """A value for ``field``: a real target, or anything of any type and size."""
    keys = st.sampled_from(["key", "value", "name", "address", "weight_bps", "samples", field]) | _TEXT
    leaves = _scalar(targets.get(field, []))
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
        max_leaves=6,
    )


def _text_of(value) -> str:
    """A value as query-string or path text."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, str):
        return value
    return json.dumps(value)


def dump(value, ensure_ascii: bool = True) -> str:
    """JSON text of ``value``, with :class:`Raw` fragments as they are."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        items = (f"{dump(str(k), ensure_ascii)}:{dump(v, ensure_ascii)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ensure_ascii) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ensure_ascii)


# -- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """One request as sent, but for tokens (``{run:victim}``...) and the key of ``credential``."""

    method: str
    path: str  # percent-encoded, with its query string
    body: bytes | None = None
    content_type: str | None = None
    credential: str = "none"  # a key of the world, or "none"
    auth: str = "bearer"  # how the key is presented: bearer, x-api-key, basic
    headers: tuple[tuple[str, str], ...] = ()
    route: str = ""  # Route.key, for the write check


CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            None,
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=UTF-16",
            "application/json; charset=latin-1",
            "application/json; charset=nonsense",
            'application/json; charset="',
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "multipart/form-data; boundary=fuzz",
            "application/x-protobuf",
            "application/octet-stream",
            "",
            ";;;",
            "*/*",
            "application/json\x80",
        ]
    ),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
)
# Printable header text, unicode included (sent as UTF-8 bytes); no control characters, which the
# HTTP parser refuses before any application code runs.
_HEADER_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)
MALFORMED_AUTH = st.one_of(
    st.sampled_from(
        [
            "Bearer",
            "Bearer ",
            "bearer hk_live_",
            "Bearer hk_live_" + "x" * 40,
            "Basic !!!",
            "Basic",
            "Basic " + base64.b64encode(b"no-colon").decode(),
            "Basic " + base64.b64encode(b":").decode(),
            "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
            "Basic ü",
            "Basic YWJj\u00e9",
            "Bearer " + "A" * 8000,
            "Bearer hk_live_" + "é" * 100,
            "Token abc",
            "Bearer a b",
            "Digest username=x",
        ]
    ),
    _HEADER_TEXT,
)
IDEMPOTENCY_KEYS = st.one_of(
    st.sampled_from(["", " ", "k" * 129, "é", "\u2028", "fuzz-1", "fuzz-1", "k" * 128]), _HEADER_TEXT
)


@st.composite
def _path(draw, route: Route, targets: dict) -> str:
    path = draw(st.sampled_from(route.paths))

    def segment(match: re.Match) -> str:
        name = match.group(1)
        if name == "key_id":
            return draw(KEY_IDS)
        value = draw(st.one_of(st.sampled_from(targets.get(name, ["x"])), _TEXT, _ODD_TEXT, _LONG_URL_TEXT))
        return quote(_text_of(value), safe=draw(st.sampled_from(["", "/", "/%."])), errors="surrogatepass")

    return _PATH_PARAM.sub(segment, path)


@st.composite
def _query(draw, route: Route, targets: dict) -> str:
    names = st.sampled_from(sorted({*route.fields, *KNOWN_PARAMS})) | _TEXT
    values = _scalar([value for field in route.fields for value in targets.get(field, [])], _LONG_URL_TEXT)
    pairs = draw(st.lists(st.tuples(names, values), max_size=5))
    if not pairs:
        return ""
    parts = []
    for name, value in pairs:
        text = _text_of(value)
        parts.append(
            f"{quote(name, safe='', errors='surrogatepass')}={quote(text, safe='', errors='surrogatepass')}"
        )
    parts.append(draw(st.sampled_from(["", "", "%ff", "%zz", "%", "&&", "=", "name", "name=%00"])))
    return "?" + "&".join(p for p in parts if p)


@st.composite
def _body(draw, route: Route, targets: dict) -> bytes | None:
    kind = draw(
        st.sampled_from(
            [
                "none",
                "empty",
                "plausible",
                "plausible",
                "fields",
                "fields",
                "any",
                "deep",
                "literal",
                "bytes",
                "form",
            ]
        )
    )
    if kind == "none":
        return None
    if kind == "empty":
        return b""
    if kind == "literal":
        return draw(
            st.sampled_from(
                [
                    b"NaN",
                    b"Infinity",
                    b"-Infinity",
                    b"1e999",
                    b'{"name": NaN}',
                    b'{"max_results": 1e999}',
                    b'{"name": "fuzz-b", "version": Infinity}',
                    b"[1e999]",
                    b"null",
                    b"true",
                    b'"fuzz-b"',
                    b'""',
                    b'"\\"{\\\\\\"name\\\\\\": 1}\\""',
                    b"1" * 5000,
                    b'{"max_results": ' + b"9" * 5000 + b"}",
                    b"{",
                    b'{"name": "fuzz-b",}',
                    b'{"name": "fuzz-b"} trailing',
                    b'{"name": "a", "name": "fuzz-b"}',
                ]
            )
        )
    if kind == "bytes":
        return draw(
            st.one_of(
                st.sampled_from(
                    [
                        b"\xff",
                        b'{"name": "\xff\xfe"}',
                        b"\x80abc",
                        b'{"name": "\xed\xa0\x80"}',
                        b"\x00" * 10,
                        b"\xef\xbb\xbf{}",
                        b'{"name": "fuzz-b\\u0000"}',
                        b'{"name": "\\ud800"}',
                    ]
                ),
                st.binary(max_size=40),
            )
        )
    if kind == "deep":
        depth = draw(st.sampled_from([30, 63, 64, 65, 100, 299]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"name":[', "]}")]))
        text = opener * depth + "1" + closer * draw(st.sampled_from([depth, depth - 1, 0]))
        if draw(st.booleans()):
            text = json.dumps(text)
        return text.encode()
    if kind == "form":
        pairs = draw(
            st.lists(st.tuples(st.sampled_from(route.fields or KNOWN_PARAMS), _scalar([])), max_size=4)
        )
        return urlencode([(k, _text_of(v)) for k, v in pairs], errors="surrogatepass").encode(
            errors="surrogatepass"
        )
    if kind == "plausible":
        # Real targets in every field that has one, so the request reaches deep into the handler;
        # the other fields anything.
        real = {field: st.sampled_from(targets[field]) for field in route.fields if field in targets}
        other = {field: _value(field, targets) for field in route.fields if field not in targets}
        value = draw(st.fixed_dictionaries(real, optional=other))
    elif kind == "fields":
        fields = {field: _value(field, targets) for field in route.fields}
        value = draw(st.fixed_dictionaries({}, optional=fields))
    else:
        value = draw(_value("body", targets))
    text = dump(value, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 3)) == 0:
        text = json.dumps(text)  # JSON wrapped in a JSON string, as old clients send it
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "utf-32", "utf-8-sig"]))
    return text.encode(encoding, errors="surrogatepass")


@st.composite
def requests(draw, route: Route) -> Req:
    credential = draw(st.sampled_from(CREDENTIALS))
    targets = _targets(credential)
    method = draw(
        st.one_of(
            st.sampled_from(route.methods), st.sampled_from(route.methods), st.sampled_from(OTHER_METHODS)
        )
    )
    headers = []
    if draw(st.integers(0, 4)) == 0:
        headers.append((draw(st.sampled_from(["Authorization", "X-API-Key"])), draw(MALFORMED_AUTH)))
    if draw(st.integers(0, 3)) == 0:
        headers.append(("Idempotency-Key", draw(IDEMPOTENCY_KEYS)))
    if draw(st.integers(0, 6)) == 0:
        headers.append(("X-Request-Id", draw(_HEADER_TEXT)))
    path, query = draw(_path(route, targets)), draw(_query(route, targets))
    return Req(
        method=method,
        path=(path + query if len(path) + len(query) <= URL_LIMIT else path)[:URL_LIMIT],
        body=draw(_body(route, targets)),
        content_type=draw(CONTENT_TYPES),
        credential=credential,
        auth=draw(st.sampled_from(["bearer", "x-api-key", "basic"])),
        headers=tuple(headers),
        route=route.key,
    )


# -- the world ------------------------------------------------------------------------------------


@dataclass
class World:
    server: object
    keys: dict[str, str]
    tokens: dict[str, str]
    before: dict
    pids: set[int]
    statuses: collections.Counter


def _seed(server, keys: dict) -> dict[str, str]:
    """Two projects' models with an attested improvement each, and scratch models; the tokens."""
    tokens = {}
    client = MlflowClient(server.url, registry_uri=server.url)
    mlflow.set_tracking_uri(server.url)
    mlflow.set_registry_uri(server.url)
    tokens["{exp:victim}"] = mlflow.set_experiment("fuzz-victim").experiment_id
    for project, name, label in (("proj-a", "fuzz-a", "a"), ("proj-b", "fuzz-b", "b")):
        tags = {T.PROJECT: project, T.MODEL_TYPE: "classification", T.BENCHMARK_METRIC: "accuracy"}
        client.create_registered_model(name, tags={T.PROJECT: project})
        mlflow.register_model(log_candidate({"accuracy": 0.7}).uri, name, tags=tags)
        improved = log_candidate({"accuracy": 0.8})
        version = mlflow.register_model(
            improved.uri,
            name,
            tags={
                **tags,
                T.BASELINE: f"{name}/1",
                T.CONTRIBUTORS: json.dumps([{"address": ALICE, "weight_bps": 10000}]),
            },
        )
        tokens[f"{{att:{label}}}"] = version.tags[T.ATTESTATION_ID]
    tokens["{run:victim}"], tokens["{logged:victim}"] = improved.run_id, improved.model_id
    tokens["{exp:scratch}"] = mlflow.set_experiment("fuzz-scratch").experiment_id
    scratch = log_candidate({"accuracy": 0.7})
    tokens["{run:scratch}"], tokens["{logged:scratch}"] = scratch.run_id, scratch.model_id
    client.create_registered_model("fuzz-scratch", tags={T.PROJECT: "proj-c"})
    baseline = {T.PROJECT: "proj-c", T.MODEL_TYPE: "classification", T.BENCHMARK_METRIC: "accuracy"}
    mlflow.register_model(scratch.uri, "fuzz-scratch", tags=baseline)
    client.create_registered_model("fuzz-free")
    create_version(client, "fuzz-free", scratch)
    return tokens


def snapshot(world_server, keys: dict, tokens: dict) -> dict:
    """What no request of a key that may not write it may change: B's model, its plugin rows, the
    victim run, the keys."""
    url, store, admin_key = world_server.url, world_server.store_uri, keys["admin"]
    model = send(url, "GET", "/api/2.0/mlflow/registered-models/get?name=fuzz-b", key=admin_key)
    versions = send(
        url, "GET", "/api/2.0/mlflow/model-versions/search?filter=name%3D%27fuzz-b%27", key=admin_key
    )
    run = send(url, "GET", f"/api/2.0/mlflow/runs/get?run_id={tokens['{run:victim}']}", key=admin_key)
    body = dict(model.json.get("registered_model") or {})
    body.pop("last_updated_timestamp", None)
    like = {"m": "fuzz-b/%"}
    return {
        "model": (model.status, body),
        "versions": sorted(json.dumps(v, sort_keys=True) for v in versions.json.get("model_versions", [])),
        "run": (run.status, run.json),
        "edges": sql(
            store,
            "SELECT child_model_id, parent_model_id, delta_one_bps, attestation_id "
            "FROM hokusai_lineage_edges WHERE child_model_id LIKE :m OR parent_model_id LIKE :m ORDER BY id",
            **like,
        ),
        "attestations": sql(
            store, "SELECT id, status FROM hokusai_attestations WHERE model_id LIKE :m ORDER BY id", **like
        ),
        "contributions": sql(
            store,
            "SELECT address, model_id, attributed_bps FROM hokusai_contributions WHERE model_id LIKE :m "
            "ORDER BY id",
            **like,
        ),
        "totals": sql(store, "SELECT * FROM hokusai_contributor_totals WHERE project = 'proj-b'"),
        # The module's keys (the first ones; an admin may create more): none revoked or changed.
        "keys": sql(
            store,
            "SELECT id, role, project, revoked_at FROM hokusai_api_keys WHERE id <= :n ORDER BY id",
            n=len(keys),
        ),
        "audit_seq": sql(store, "SELECT seq FROM hokusai_audit_head WHERE id = 1")[0][0],
    }


@pytest.fixture(scope="module")
def world(hokusai_servers):
    server = hokusai_servers.start(
        "postgresql", workers=2, env={"HOKUSAI_AUTH": "apikey", "HOKUSAI_DEV_MODE": ""}
    )
    keys = {
        "admin": make_key(server.store_uri, "admin"),
        "write": make_key(server.store_uri, "write"),
        "write_a": make_key(server.store_uri, "write", "proj-a"),
        "read": make_key(server.store_uri, "read"),
    }
    os.environ["MLFLOW_TRACKING_TOKEN"] = keys["admin"]
    try:
        with mlflow_env():
            tokens = _seed(server, keys)
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    before = snapshot(server, keys, tokens)
    pids = worker_pids(server)
    yield World(server, keys, tokens, before, pids, collections.Counter())
    assert_workers_alive(server, pids, "a worker crashed or was restarted during the fuzzing")


# -- one exchange ---------------------------------------------------------------------------------


def _render(text: str, tokens: dict) -> str:
    for token, value in tokens.items():
        text = text.replace(token, value).replace(quote(token, safe=""), value)
    return text


def exchange(world: World, req: Req) -> Answer:
    """Send ``req`` and check the answer (status, error shape, time, write rights)."""
    headers: dict[str, bytes] = {}
    for name, value in req.headers:
        headers[name] = value.encode("utf-8", errors="surrogatepass")
    if req.credential != "none":
        key = world.keys[req.credential]
        if req.auth == "x-api-key":
            headers.setdefault("X-API-Key", key.encode())
        elif req.auth == "basic":
            headers.setdefault("Authorization", b"Basic " + base64.b64encode(f"fuzz:{key}".encode()))
        else:
            headers.setdefault("Authorization", f"Bearer {key}".encode())
    body = req.body
    if body is not None:
        for token, value in world.tokens.items():
            body = body.replace(token.encode(), value.encode())
    path = _render(req.path, world.tokens)
    answer = send(world.server.url, req.method, path, body, content_type=req.content_type, headers=headers)
    world.statuses[answer.status] += 1
    where = f"{req!r}\n-> {answer.status} {answer.headers.get('content-type')} {answer.body[:300]!r}"
    assert answer.status < 500, where + world.server._log_tail(60)
    if answer.status >= 400 and req.method != "HEAD" and path.startswith(("/api/", "/ajax-api/")):
        assert answer.headers.get("content-type", "").startswith("application/json"), where
        payload = json.loads(answer.body)
        assert isinstance(payload, dict), where
        assert isinstance(payload.get("error_code"), str) and isinstance(payload.get("message"), str), where
    route = next((r for r in ROUTES if r.key == req.route), None)
    role = route.role(req.method) if route is not None else None
    if req.credential not in WRITERS and role in (WRITE, ADMIN):
        assert not 200 <= answer.status < 300, "a key that may not write was answered 2xx: " + where
    return answer


# -- the fuzzing ----------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=EXAMPLES_PER_ROUTE,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize("route", ROUTES, ids=str)
@FUZZ
@given(data=st.data())
def test_fuzzed_requests_get_a_bounded_well_formed_answer(world, route, data):
    exchange(world, data.draw(requests(route), label="request"))


ANY_ROUTE = st.sampled_from(ROUTES).flatmap(requests)


JSON = "application/json"


# Requests the fuzzing found answered 5xx (or an HTML error page), one per root cause. Each failed
# the same way on a plain `mlflow server` unless it says "plugin".
@settings(FUZZ, phases=[Phase.explicit])
# MLflow's _get_request_message: a body that is JSON but not an object (NaN, a list) reaches protobuf
# parsing and MLflow's validators: TypeError "'float' object is not iterable", AttributeError
# "'list' object has no attribute 'get'".
@example(Req("GET", "/api/2.0/mlflow/artifacts/list", b"NaN", None, "admin", route="mlflow/artifacts/list"))
@example(
    Req(
        "POST",
        "/ajax-api/2.0/mlflow/registered-models/create",
        b"\xff\xfe[\x00]\x00",  # UTF-16 "[]"
        JSON,
        "write",
        route="mlflow/registered-models/create",
    )
)
# ... a JSON string that holds no JSON: json.loads of it in _get_normalized_request_json.
@example(
    Req(
        "DELETE",
        "/api/2.0/mlflow/model-versions/delete",
        b'"[[1]"',
        "text/plain; charset=utf-8",
        "admin",
        route="mlflow/model-versions/delete",
    )
)
# MLflow's _graphql reads the body only: a GET with a query string gets None.get (AttributeError); a
# query that is not a string (TypeError) or does not parse (GraphQLSyntaxError) escapes too.
@example(Req("GET", "/graphql?query=%7B__typename%7D", None, None, "read", route="/graphql"))
@example(Req("POST", "/graphql", b'{"query": 1}', JSON, "read", route="/graphql"))
@example(Req("POST", "/graphql", b'{"query": "' + b"{" * 1000 + b'"}', JSON, "admin", route="/graphql"))
# Werkzeug's HTML 405 and 404 pages on API paths (a method the route does not take, a slash in a
# path parameter).
@example(
    Req(
        "PUT",
        "/api/2.0/mlflow/registered-models/get",
        None,
        None,
        "read",
        route="mlflow/registered-models/get",
    )
)
@example(
    Req(
        "GET",
        "/api/2.0/mlflow/logged-models/a/b",
        None,
        None,
        "read",
        route="mlflow/logged-models/<model_id>",
    )
)
# PostgreSQL refuses a NUL character (psycopg2 ValueError): MLflow answers 500 INTERNAL_ERROR.
@example(
    Req(
        "GET",
        "/api/2.0/mlflow/registered-models/get-latest-versions?name=%00",
        None,
        None,
        "write_a",
        route="mlflow/registered-models/get-latest-versions",
    )
)
# _log_batch measures the body first: len(None) when it is not JSON (TypeError).
@example(
    Req("POST", "/ajax-api/2.0/mlflow/runs/log-batch", b"", JSON, "write", route="mlflow/runs/log-batch")
)
# Validators that assume their type when protobuf parsing failed: int("1.0") (ValueError; protobuf
# accepts "1.0" for an int64), int(inf) (OverflowError), int([]) (TypeError), item.get of a list of
# messages (AttributeError).
@example(
    Req(
        "GET",
        "/api/2.0/mlflow/registered-models/search?max_results=-8355599249119390.0",
        None,
        None,
        "read",
        route="mlflow/registered-models/search",
    )
)
@example(
    Req(
        "POST",
        "/api/2.0/mlflow/runs/search",
        b'{"max_results": 1e999}',
        JSON,
        "read",
        route="mlflow/runs/search",
    )
)
@example(
    Req(
        "POST",
        "/ajax-api/2.0/mlflow/experiments/search",
        b'{"view_type": [], "page_token": [{}]}',
        JSON,
        "admin",
        route="mlflow/experiments/search",
    )
)
@example(
    Req(
        "POST",
        "/api/2.0/mlflow/runs/log-batch",
        b'{"run_id": "{run:scratch}", "metrics": [1]}',
        JSON,
        "write",
        route="mlflow/runs/log-batch",
    )
)
# /model-versions/get-artifact without a version: int(None) in the registry store.
@example(
    Req(
        "GET",
        "/model-versions/get-artifact?name=fuzz-scratch&path=MLmodel",
        None,
        None,
        "admin",
        route="/model-versions/get-artifact",
    )
)
# validate_path_is_safe gives up (ValueError "Failed to decode url") on a path that does not settle
# within 10 rounds of percent-decoding and urlunparse: many leading slashes.
@example(
    Req(
        "GET",
        "/api/2.0/mlflow/artifacts/list?run_id={run:victim}&path=" + "%2F" * 40,
        None,
        None,
        "read",
        route="mlflow/artifacts/list",
    )
)
# Plugin, server/auth.py presented_key: base64.b64decode of a str with a non-ASCII character raises
# ValueError, not binascii.Error (the header is "Basic ü", read as latin-1: "Basic Ã¼").
@example(
    Req(
        "GET",
        "/api/2.0/mlflow/registered-models/search",
        headers=(("Authorization", "Basic ü"),),
        route="mlflow/registered-models/search",
    )
)
# Plugin, runtime/request_context.py current_request_id: a printable non-ASCII X-Request-Id is kept
# and echoed as a response header, which Starlette's WSGI bridge encodes as ASCII
# (UnicodeEncodeError): every API route, a public one included.
@example(
    Req("GET", "/api/2.0/hokusai/health/live", headers=(("X-Request-Id", "é"),), route="hokusai/health/live")
)
@given(req=ANY_ROUTE)
def test_regressions(world, req):
    exchange(world, req)


def test_nothing_was_written_by_a_key_that_may_not_write(world):
    after = snapshot(world.server, world.keys, world.tokens)
    before = world.before
    assert {k: v for k, v in after.items() if k != "audit_seq"} == {
        k: v for k, v in before.items() if k != "audit_seq"
    }
    writers = {f"key:{display_prefix(world.keys[name])}": name for name in WRITERS}
    entries = sql(
        world.server.store_uri,
        "SELECT seq, actor, action, target FROM hokusai_audit_log WHERE seq > :s ORDER BY seq",
        s=before["audit_seq"],
    )
    for seq, actor, action, target in entries:
        assert actor in writers, (seq, actor, action, target)
        assert not re.match(r"^(registered_model:fuzz-b$|model_version:fuzz-b/)", target), (
            seq,
            actor,
            target,
        )


def test_the_same_workers_serve_and_the_server_is_ready(world):
    answered = sum(world.statuses.values())
    print(f"fuzzed requests by status: {dict(sorted(world.statuses.items()))} ({answered} in all)")
    assert_workers_alive(world.server, world.pids, "a worker crashed or was restarted")
    ready = send(world.server.url, "GET", "/api/2.0/hokusai/health/ready")
    assert ready.status == 200, ready
    if answered >= 300:  # the whole module ran: the fuzzing reached the handlers, not only the auth
        assert {200, 400, 401, 403, 404} <= set(world.statuses), world.statuses
