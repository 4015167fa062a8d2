# The MLflow + Hokusai server image: `mlflow server --app-name hokusai` (server_config/entrypoint.sh).
# docker-compose.yml builds it; docs/deployment.md explains the stack and Kubernetes.
#
# Trixie rather than bookworm: its postgresql-client (17) can dump and restore the stack's PostgreSQL
# 16 for `hokusai backup create|restore` (pg_dump must be the server's major version or newer),
# without adding a third-party apt repository. A patch-level tag, so a rebuild gets the same
# Python; pin the digest too (docker buildx imagetools inspect) for byte-identical rebuilds.
FROM python:3.11.13-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Not version-pinned (hadolint DL3008): Debian's archive drops superseded versions, so a pin
# would break the next build, and the security updates are what a rebuild should pick up.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid: Kubernetes' runAsNonRoot can only verify a numeric USER, and volumes
# (the attester keystore, backups) keep the same owner across rebuilds. The volume directories
# are 0700 and owned by that user: a new named volume mounted on one starts out as a copy of it,
# writable by the server only.
RUN groupadd --system --gid 10001 hokusai \
    && useradd --system --uid 10001 --gid hokusai --home-dir /var/lib/hokusai --shell /usr/sbin/nologin hokusai \
    && install -d -m 0755 -o hokusai -g hokusai /var/lib/hokusai \
    && install -d -m 0700 -o hokusai -g hokusai /var/lib/hokusai/keys /var/lib/hokusai/backups

# Only what `pip install .` needs (setup.py reads README.md); .dockerignore keeps the rest
# (.git, .venv, server_config/.env) out of the build context altogether.
WORKDIR /src
COPY setup.py README.md ./
COPY mlflow_hokusai_plugin ./mlflow_hokusai_plugin
RUN pip install . && rm -rf /src

COPY server_config/entrypoint.sh /usr/local/bin/hokusai-entrypoint
RUN chmod 0755 /usr/local/bin/hokusai-entrypoint

USER 10001:10001
ENV HOME=/var/lib/hokusai
WORKDIR /var/lib/hokusai
EXPOSE 5000

# Readiness, not liveness: a replica whose database or artifact store is unreachable is reported
# unhealthy. The first start migrates the tables, hence the start period. urllib raises on a 503,
# so any answer but 200 (or none) fails the check; no curl in the image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/api/2.0/hokusai/health/ready', timeout=4)"]

ENTRYPOINT ["/usr/local/bin/hokusai-entrypoint"]
