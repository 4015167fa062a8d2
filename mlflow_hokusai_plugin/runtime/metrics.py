"""Prometheus metrics of the Hokusai server: its routes and its domain events.

The server runs several worker processes (uvicorn or gunicorn), each with its own counters. Run
it with MLflow's own flag ``mlflow server --expose-prometheus DIR``: MLflow then sets
``prometheus_multiproc_dir``, ``prometheus_client`` keeps every worker's values in files there,
and a scrape of ``/api/2.0/hokusai/metrics`` on any worker adds them all up (so does MLflow's own
``/metrics``). Without the flag each worker reports only itself, which is right for one worker.
The directory must be emptied before the server starts (the container's entrypoint does it).

Names (alert rules and the Grafana dashboard in ``server_config/`` depend on them):

- ``hokusai_http_requests_total{route,method,status}``, ``hokusai_http_request_duration_seconds``
- ``hokusai_registrations_total{project}``, ``hokusai_attestations_total{status}``
  (``signed``/``failed``), ``hokusai_delta_one_bps_total{project}``
- ``hokusai_auth_failures_total{reason}`` (``unauthenticated``/``forbidden``),
  ``hokusai_rate_limited_total{route}``
- at scrape time: ``hokusai_ready`` and ``hokusai_backup_last_success_timestamp_seconds``
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Requests to MLflow's and our routes are mostly milliseconds; model uploads can take seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNMATCHED_ROUTE = "<unmatched>"  # 404s: the raw path would give one time series per typo

HTTP_REQUESTS = Counter(
    "hokusai_http_requests_total",
    "Requests answered, by route, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "hokusai_http_request_duration_seconds",
    "Time to answer a request, by route and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
REGISTRATIONS = Counter(
    "hokusai_registrations_total", "Improved model versions registered and attested.", ["project"]
)
ATTESTATIONS = Counter("hokusai_attestations_total", "Attestations signed or failed.", ["status"])
# Both series exist from the start at 0, so an alert on increase() sees the first failure too.
ATTESTATIONS.labels("signed")
ATTESTATIONS.labels("failed")
DELTA_ONE_BPS = Counter(
    "hokusai_delta_one_bps_total", "DeltaOne awarded, in basis points (100 bps = 1 DeltaOne).", ["project"]
)
AUTH_FAILURES = Counter("hokusai_auth_failures_total", "Requests refused by authentication.", ["reason"])
RATE_LIMITED = Counter("hokusai_rate_limited_total", "Requests refused by a rate limit (429).", ["route"])

_AUTH_REASONS = {401: "unauthenticated", 403: "forbidden"}


def observe_request(route: str | None, method: str, status: int, seconds: float) -> None:
    """Count one answered request (and what its status says about auth and rate limits)."""
    route = route or UNMATCHED_ROUTE
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    HTTP_LATENCY.labels(route, method).observe(seconds)
    if status in _AUTH_REASONS:
        AUTH_FAILURES.labels(_AUTH_REASONS[status]).inc()
    elif status == 429:
        RATE_LIMITED.labels(route).inc()


def improvement_attested(project: str | None, delta_one_bps: int) -> None:
    """An improved version was registered and its attestation signed."""
    project = project or "default"
    REGISTRATIONS.labels(project).inc()
    ATTESTATIONS.labels("signed").inc()
    DELTA_ONE_BPS.labels(project).inc(max(0, int(delta_one_bps)))


def attestation_failed() -> None:
    """An improved version can never be attested (its facts do not hold); it is marked failed."""
    ATTESTATIONS.labels("failed").inc()


def multiprocess_dir() -> str | None:
    """Where the workers keep their values, when the server was started with --expose-prometheus."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


class ScrapeTimeCollector:
    """Gauges whose value is read when Prometheus scrapes: readiness and the last backup."""

    def __init__(self, ready: Callable[[], bool], last_backup: Callable[[], float | None]) -> None:
        self._ready = ready
        self._last_backup = last_backup

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ready = GaugeMetricFamily("hokusai_ready", "1 when the server's readiness checks all pass, else 0.")
        ready.add_metric([], 1.0 if self._ready() else 0.0)
        yield ready
        backup = GaugeMetricFamily(
            "hokusai_backup_last_success_timestamp_seconds",
            "Unix time of the last successful `hokusai backup create` (0: never).",
        )
        backup.add_metric([], float(self._last_backup() or 0.0))
        yield backup


def exposition(scrape_time: ScrapeTimeCollector | None = None) -> bytes:
    """The text a scrape gets: every worker's counters (multiprocess mode) or this one's."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiprocess_dir())
    else:
        from prometheus_client import REGISTRY as registry
    if scrape_time is None:
        return generate_latest(registry)
    # A per-scrape registry, so the scrape-time gauges are never registered twice.
    combined = CollectorRegistry()
    combined.register(_Union(registry, scrape_time))
    return generate_latest(combined)


class _Union:
    def __init__(self, registry: CollectorRegistry, extra: ScrapeTimeCollector) -> None:
        self._registry, self._extra = registry, extra

    def collect(self) -> Iterator:
        yield from self._registry.collect()
        yield from self._extra.collect()
