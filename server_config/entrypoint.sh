#!/bin/sh
# Entrypoint of the Hokusai server image.
#
# With arguments it runs them (`docker compose run --rm hokusai hokusai signer new ...`, or
# `mlflow db upgrade ...`), so one-off commands get the same image and environment as the server.
# Without, it starts `mlflow server --app-name hokusai` on the store and artifact destination
# given in the environment.
set -eu

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

fail() {
    echo "hokusai-entrypoint: $*" >&2
    exit 1
}

: "${HOKUSAI_STORE_URI:?set HOKUSAI_STORE_URI, e.g. hokusai+postgresql://user:pass@host/db}"
: "${HOKUSAI_ARTIFACTS_DESTINATION:?set HOKUSAI_ARTIFACTS_DESTINATION, e.g. s3://mlflow-artifacts/}"

# server_config/.env.example ships placeholders; a stack started with them would have well-known
# passwords, so refuse (the variable names only, never their values, go to the log).
placeholders=$(env | grep -i 'change-me' | cut -d= -f1 | tr '\n' ' ' || true)
if [ -n "$placeholders" ]; then
    fail "placeholder values (change-me) in: ${placeholders}- replace them in server_config/.env"
fi

# A missing keystore would otherwise surface as a Python traceback; say how to make one.
if [ -n "${HOKUSAI_ATTESTER_KEYSTORE:-}" ] && [ ! -f "$HOKUSAI_ATTESTER_KEYSTORE" ]; then
    fail "no keystore at $HOKUSAI_ATTESTER_KEYSTORE: create it once with" \
        "docker compose run --rm --no-deps hokusai hokusai signer new --keystore $HOKUSAI_ATTESTER_KEYSTORE"
fi

# MLflow refuses requests whose Host header is not in MLFLOW_SERVER_ALLOWED_HOSTS (DNS-rebinding
# protection; unset, it allows localhost and private addresses), and state-changing API calls
# (the UI's POSTs included) whose Origin is not in MLFLOW_SERVER_CORS_ALLOWED_ORIGINS (unset,
# localhost only). The names in HOKUSAI_PUBLIC_HOSTS are added to the hosts' default rather than
# replacing it, because the healthcheck (127.0.0.1) and Prometheus (a replica's private address)
# must still get through, and allowed as origins over http and https. Either MLflow variable set
# explicitly is left as it is.
if [ -n "${HOKUSAI_PUBLIC_HOSTS:-}" ]; then
    set -f  # the names may hold wildcards (*.example.com): never expand them against files
    old_ifs=$IFS
    IFS=,
    hosts=""
    origins=""
    for host in $HOKUSAI_PUBLIC_HOSTS; do
        host=$(echo "$host" | tr -d ' ')
        [ -n "$host" ] || continue
        hosts="$hosts$host,"
        origins="$origins${origins:+,}http://$host,https://$host"
    done
    IFS=$old_ifs
    set +f
    private="10.*,192.168.*"
    n=16
    while [ "$n" -le 31 ]; do
        private="$private,172.$n.*"
        n=$((n + 1))
    done
    if [ -z "${MLFLOW_SERVER_ALLOWED_HOSTS:-}" ]; then
        MLFLOW_SERVER_ALLOWED_HOSTS="${hosts}localhost,localhost:*,127.0.0.1,127.0.0.1:*,$private"
        export MLFLOW_SERVER_ALLOWED_HOSTS
    fi
    if [ -z "${MLFLOW_SERVER_CORS_ALLOWED_ORIGINS:-}" ]; then
        MLFLOW_SERVER_CORS_ALLOWED_ORIGINS="$origins"
        export MLFLOW_SERVER_CORS_ALLOWED_ORIGINS
    fi
fi

# prometheus_client's multiprocess mode keeps one file per worker pid here. Files of a previous
# run (a container restart keeps /tmp) would be added to the new workers' counters, and dead
# pids' gauges would linger, so start from an empty directory every time. (HOKUSAI_METRICS_DIR
# exists for the tests, which run this script outside a container.)
metrics_dir="${HOKUSAI_METRICS_DIR:-/tmp/hokusai-metrics}"
mkdir -p "$metrics_dir"
find "$metrics_dir" -mindepth 1 -delete

exec mlflow server --app-name hokusai \
    --host 0.0.0.0 --port 5000 \
    --workers "${HOKUSAI_WORKERS:-2}" \
    --backend-store-uri "$HOKUSAI_STORE_URI" \
    --artifacts-destination "$HOKUSAI_ARTIFACTS_DESTINATION" \
    --expose-prometheus "$metrics_dir"
