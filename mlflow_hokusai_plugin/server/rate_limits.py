"""Rate limits for every request the Flask app serves (flask-limiter).

Three buckets per caller, each a flask-limiter limit string read from the environment at start;
which bucket a request counts against is declared with its route (``permissions.py``):

=============================  ===============  ==============================================
variable                       default          requests counted
=============================  ===============  ==============================================
``HOKUSAI_RATELIMIT_READ``     ``1200/minute``  reads: GET and HEAD, and MLflow's search/get
                                                POSTs
``HOKUSAI_RATELIMIT_WRITE``    ``300/minute``   every other request except OPTIONS
``HOKUSAI_RATELIMIT_REGISTER`` ``60/minute``    what may cause a signature: MLflow's
                                                model-version create, a ``hokusai.*`` tag set on
                                                a version, ``hokusai/models/register``
=============================  ===============  ==============================================

Failed authentications have a bucket of their own, per client address:
``HOKUSAI_RATELIMIT_AUTH_FAILURES`` (default ``30/minute``, see :class:`AuthFailureLimit`).

A string may hold several limits (``"1200/minute;20000/hour"``). ``HOKUSAI_RATELIMIT_ENABLED=0``
switches rate limiting off. ``/health``, the Hokusai ``health/live`` and ``health/ready`` routes,
the UI's static files and CORS preflights (OPTIONS) are never limited. Routes that MLflow 3.x serves
in FastAPI itself (artifact streaming, OTLP, jobs, gateway) never reach Flask and are not limited
here.

*Who* is counted: ``flask.g.hokusai_principal.name`` when authentication has set a principal
(``key:hk_live_ab12cd34``, ``user:alice``), else ``ip:<remote address>``. The key is computed when
the limit is checked, by a ``before_request`` hook that :func:`install_rate_limits` registers; call
it at the END of ``create_app`` so it runs after the authentication hook. A request that an earlier
hook answers itself (e.g. a 401 from auth) is not counted. Behind uvicorn the remote address honours
``X-Forwarded-For`` from the addresses in ``FORWARDED_ALLOW_IPS`` (uvicorn's default:
``127.0.0.1``), i.e. from a reverse proxy on the same host.

Storage (``HOKUSAI_RATELIMIT_STORAGE_URI``): ``memory://`` counts in each worker process (with
``--workers N`` a limit of L admits up to N*L); ``redis://host:port/db`` (or ``rediss://``) shares
the counters between workers and replicas.

Strategy: **moving window**. On Redis every hit is one Lua script (atomic: check the L-th newest
entry, push, trim), so the limit is exact across processes: L per minute admits at most L requests
in ANY 60-second span, and workers cannot over-admit by racing each other. A fixed window is just
as atomic but admits up to 2L around a window edge; the moving window costs one list of at most L
timestamps per caller and bucket, which is small at these limits.

Over the limit: HTTP 429 ``{"error_code": "REQUEST_LIMIT_EXCEEDED", "message": ...}`` with
``Retry-After`` (seconds until a slot frees). Every limited response, 429 or not, carries
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` (after this request) and ``X-RateLimit-Reset``
(Unix time, seconds).

When Redis cannot be reached at request time the server keeps serving (**fail open, degraded**):
each worker falls back to in-memory counters with the same limits, so callers are still limited
(each worker admits up to L: a server admits up to workers*L instead of L), logs a warning, and
goes back to Redis when a ping succeeds again (retried with a back-off of 1 to 32 s). A rate
limiter protects the registry; its outage must not become a registry outage.
:func:`rate_limit_storage_check` reports the storage for readiness (``ok: false`` while Redis is
unreachable). A broken configuration (a bad limit string, an unknown storage scheme) stops the
server at start with an error naming the variable.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, request
from flask_limiter import ApplicationLimit, Limit, Limiter, RateLimitExceeded
from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError

from mlflow_hokusai_plugin.runtime.config import ConfigError
from mlflow_hokusai_plugin.runtime.uris import redact_uri
from mlflow_hokusai_plugin.server import routes
from mlflow_hokusai_plugin.server.errors import error_response
from mlflow_hokusai_plugin.server.request_scope import rate_bucket

_logger = logging.getLogger(__name__)

ENV_ENABLED = "HOKUSAI_RATELIMIT_ENABLED"
ENV_STORAGE_URI = "HOKUSAI_RATELIMIT_STORAGE_URI"
ENV_LIMITS = {
    "read": ("HOKUSAI_RATELIMIT_READ", "1200/minute"),
    "write": ("HOKUSAI_RATELIMIT_WRITE", "300/minute"),
    "register": ("HOKUSAI_RATELIMIT_REGISTER", "60/minute"),
}
# Failed authentications per client address: a guesser's budget, far above a mistyped key's.
ENV_AUTH_FAILURES = "HOKUSAI_RATELIMIT_AUTH_FAILURES"
DEFAULT_AUTH_FAILURES = "30/minute"
STRATEGY = "moving-window"
KEY_PREFIX = "hokusai"
ERROR_CODE = "REQUEST_LIMIT_EXCEEDED"
HEADER_LIMIT = "X-RateLimit-Limit"
HEADER_REMAINING = "X-RateLimit-Remaining"
HEADER_RESET = "X-RateLimit-Reset"
HEADER_RETRY_AFTER = "Retry-After"
_EXTENSION = "hokusai_rate_limits"
_MEMORY_SCHEMES = ("memory",)
# Seconds: a Redis that does not answer must not hold a request (or readiness) for long.
_REDIS_TIMEOUT_S = 1.0

# MLflow's UI and health endpoints (the same under any --static-prefix).
_EXEMPT_ENDPOINTS = frozenset({"health", "serve", "serve_static_file", "static"})
_READ_METHODS = frozenset({"GET", "HEAD"})
_ENABLED_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


@dataclass(frozen=True)
class RateLimitSettings:
    enabled: bool
    storage_uri: str
    limits: Mapping[str, str]  # request class -> limit string, validated

    @property
    def shared(self) -> bool:
        """Whether the counters are shared between processes (not ``memory://``)."""
        return _scheme(self.storage_uri) not in _MEMORY_SCHEMES

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, storage_uri: str | None = None
    ) -> RateLimitSettings:
        """Read and validate the ``HOKUSAI_RATELIMIT_*`` variables; ConfigError names the bad one."""
        env = os.environ if environ is None else environ
        raw_enabled = env.get(ENV_ENABLED, "1").strip().lower() or "1"
        if raw_enabled not in _ENABLED_VALUES:
            raise ConfigError(f"{ENV_ENABLED}={raw_enabled!r}: expected 1 or 0")
        storage_uri = storage_uri or env.get(ENV_STORAGE_URI) or "memory://"
        limits = {}
        for request_class, (variable, default) in ENV_LIMITS.items():
            value = env.get(variable, "").strip() or default
            _parse_limit(variable, value)
            limits[request_class] = value
        return cls(enabled=_ENABLED_VALUES[raw_enabled], storage_uri=storage_uri, limits=limits)


class HokusaiLimiter(Limiter):
    """flask-limiter's Limiter, plus the settings it was built from (for readiness and logs)."""

    settings: RateLimitSettings


def _parse_limit(variable: str, value: str) -> list[RateLimitItem]:
    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if not items:
        raise ConfigError(
            f"{variable}={value!r} is not a rate limit: expected e.g. '300/minute' or "
            "'1200/minute;20000/hour' (flask-limiter notation)"
        )
    for item in items:
        if item.amount < 1:
            raise ConfigError(
                f"{variable}={value!r}: a limit must admit at least 1 request "
                f"(set {ENV_ENABLED}=0 to switch rate limiting off)"
            )
    return items


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


# -- who and what ---------------------------------------------------------------------------------


def rate_limit_key() -> str:
    """The caller: the authenticated principal's name, else ``ip:<remote address>``.

    Evaluated when the limit is checked, so it sees what the auth hook set on ``flask.g``.
    """
    principal = getattr(g, "hokusai_principal", None)
    name = getattr(principal, "name", None) if principal is not None else None
    if name:
        return str(name)
    return f"ip:{request.remote_addr or 'unknown'}"


def request_class() -> str | None:
    """``read``, ``write``, ``register``, or None for a request that is never limited."""
    if _is_exempt():
        return None
    if request.method.upper() in _READ_METHODS:
        return "read"
    return rate_bucket()


@functools.cache
def _exempt_paths() -> frozenset[str]:
    prefix = os.environ.get("_MLFLOW_STATIC_PREFIX", "").rstrip("/")
    paths = {
        "/health",
        *routes.both(routes.HEALTH_LIVE),
        *routes.both(routes.HEALTH_READY),
        *routes.both(routes.METRICS),
    }
    return frozenset(prefix + path for path in paths)


def _is_exempt() -> bool:
    if request.method.upper() == "OPTIONS":  # CORS preflight
        return True
    if request.endpoint in _EXEMPT_ENDPOINTS:
        return True
    return request.path in _exempt_paths() or request.path.rstrip("/") in _exempt_paths()


# -- installation ---------------------------------------------------------------------------------


def _class_limits(settings: RateLimitSettings, *, fallback: bool) -> list[Limit]:
    """One limit definition per request class, each its own bucket (scope) per caller.

    ``fallback``: the same limits for flask-limiter's in-memory fallback (plain shared Limits).
    """

    def unless(name: str):
        return lambda: request_class() != name

    limits: list[Limit] = []
    for name, value in settings.limits.items():
        options = {"key_function": rate_limit_key, "scope": name, "exempt_when": unless(name)}
        limits.append(
            Limit(value, shared=True, **options) if fallback else ApplicationLimit(value, **options)
        )
    return limits


def _storage_options(uri: str) -> dict[str, Any]:
    if _scheme(uri).startswith(("redis", "rediss", "valkey")):
        return {"socket_connect_timeout": _REDIS_TIMEOUT_S, "socket_timeout": _REDIS_TIMEOUT_S}
    return {}


def install_rate_limits(app: Flask, config: Any = None) -> HokusaiLimiter:
    """Rate-limit every request ``app`` serves; return the limiter (for :func:`rate_limit_storage_check`).

    ``config`` is the server's ``HokusaiConfig`` (its ``ratelimit_storage_uri``); None reads the
    environment. Call it last in ``create_app``: the check is a ``before_request`` hook and must
    run after authentication's. Raises ConfigError (naming the variable) for a bad configuration.
    Installing twice on one app returns the first limiter.
    """
    existing = app.extensions.get(_EXTENSION)
    if existing is not None:
        return existing
    storage_uri = getattr(config, "ratelimit_storage_uri", None)
    settings = RateLimitSettings.from_env(storage_uri=storage_uri)
    fallback = settings.shared
    try:
        limiter = HokusaiLimiter(
            key_func=rate_limit_key,
            application_limits=_class_limits(settings, fallback=False),
            strategy=STRATEGY,
            storage_uri=settings.storage_uri,
            storage_options=_storage_options(settings.storage_uri),
            # Headers are written below: flask-limiter would put Retry-After on every response.
            headers_enabled=False,
            # Never a 500 because of the limiter: shared storage down -> per-worker memory counters;
            # anything else -> logged and the request is served.
            swallow_errors=True,
            in_memory_fallback_enabled=fallback,
            in_memory_fallback=_class_limits(settings, fallback=True) if fallback else None,
            key_prefix=KEY_PREFIX,
            # Unmatched paths (404/405) count too, as their method's class.
            request_identifier=lambda: request.endpoint or "-",
            enabled=settings.enabled,
        )
        limiter.settings = settings
        limiter.request_filter(_is_exempt)
        # Registers the check as the LAST before_request hook so far (hence: call this last).
        limiter.init_app(app)
    except (ConfigurationError, ValueError) as exc:
        raise ConfigError(
            f"{ENV_STORAGE_URI}={redact_uri(settings.storage_uri)!r}: {exc} "
            "(expected memory:// or redis://host:port/db)"
        ) from None
    app.extensions[_EXTENSION] = limiter
    if not settings.enabled:
        _logger.warning("hokusai rate limits are OFF (%s=0)", ENV_ENABLED)
        return limiter

    app.register_error_handler(RateLimitExceeded, _too_many_requests_handler(limiter))
    app.after_request(_headers_writer(limiter))
    _logger.info(
        "hokusai rate limits: read %s, write %s, register %s per %s; storage %s (%s)",
        settings.limits["read"],
        settings.limits["write"],
        settings.limits["register"],
        "principal or IP",
        redact_uri(settings.storage_uri),
        "shared" if settings.shared else "per worker process",
    )
    if settings.shared and not limiter.storage.check():
        _logger.warning(
            "hokusai rate limits: storage %s is not reachable; serving with per-worker in-memory "
            "limits until it is",
            redact_uri(settings.storage_uri),
        )
    return limiter


def _window(limiter: Limiter) -> tuple[float, int] | None:
    """(reset time, remaining) of the limit that applies to this request, or None."""
    current = limiter.current_limit
    if current is None:
        return None
    try:
        reset, remaining = current.window
        return reset, remaining
    except Exception:  # noqa: BLE001 - storage gone between check and response: no headers
        _logger.debug("rate-limit window unavailable", exc_info=True)
        return None


def _too_many_requests_handler(limiter: Limiter):
    def handle(exc: RateLimitExceeded) -> Response:
        limit = exc.limit.limit
        window = _window(limiter)
        now = time.time()
        retry_after = max(1, math.ceil(window[0] - now)) if window else int(limit.get_expiry())
        scope = exc.limit.scope if isinstance(exc.limit.scope, str) else "these"
        response = error_response(
            429,
            ERROR_CODE,
            f"Rate limit exceeded for {scope} requests: {limit.amount} per {_per(limit)}. "
            f"Retry after {retry_after} s.",
        )
        response.headers[HEADER_RETRY_AFTER] = str(retry_after)
        return response

    return handle


def _per(limit: RateLimitItem) -> str:
    unit = limit.GRANULARITY.name
    return unit if limit.multiples == 1 else f"{limit.multiples} {unit}s"


def _headers_writer(limiter: Limiter):
    def write_headers(response: Response) -> Response:
        current = limiter.current_limit
        window = _window(limiter) if current is not None else None
        if current is None or window is None:
            return response
        reset, remaining = window
        response.headers[HEADER_LIMIT] = str(current.limit.amount)
        response.headers[HEADER_REMAINING] = str(max(0, remaining))
        response.headers[HEADER_RESET] = str(math.ceil(reset))
        return response

    return write_headers


# -- failed authentications -----------------------------------------------------------------------


class AuthFailureLimit:
    """Failed authentications per client address (``HOKUSAI_RATELIMIT_AUTH_FAILURES``).

    Once an address has failed that many times in the window, every authentication from it is
    answered 429 until the window frees a slot, a valid key included: otherwise the answer would
    tell a guesser which key is right. Counted in the limiter's storage (shared through Redis);
    if that storage fails, in this worker's memory, as the other limits fall back.
    """

    def __init__(self, limit: RateLimitItem, storage: Any) -> None:
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self.limit = limit
        self._shared = MovingWindowRateLimiter(storage)
        self._memory = MovingWindowRateLimiter(MemoryStorage())

    @classmethod
    def from_limiter(
        cls, limiter: HokusaiLimiter, environ: Mapping[str, str] | None = None
    ) -> AuthFailureLimit | None:
        """The failure limit beside ``limiter``'s, or None when rate limits are off."""
        if not limiter.enabled:
            return None
        env = os.environ if environ is None else environ
        value = env.get(ENV_AUTH_FAILURES, "").strip() or DEFAULT_AUTH_FAILURES
        return cls(_parse_limit(ENV_AUTH_FAILURES, value)[0], limiter.storage)

    def _call(self, operation: str, address: str) -> Any:
        identity = ("auth-failures", address or "unknown")
        try:
            return getattr(self._shared, operation)(self.limit, *identity)
        except Exception:  # noqa: BLE001 - storage down: count in this worker instead
            _logger.warning("failed-authentication counter: storage unavailable, counting in memory")
            return getattr(self._memory, operation)(self.limit, *identity)

    def blocked(self, address: str | None) -> int | None:
        """Seconds to wait when ``address`` is over the limit, else None."""
        if self._call("test", address or ""):
            return None
        reset, _ = self._call("get_window_stats", address or "")
        return max(1, math.ceil(reset - time.time()))

    def record(self, address: str | None) -> None:
        """Count one failed authentication from ``address``."""
        self._call("hit", address or "")


# -- readiness ------------------------------------------------------------------------------------


def rate_limit_storage_check(limiter: Limiter | None) -> dict:
    """The rate-limit storage, for ``/health/ready``; never raises.

    ``ok`` is false only when a shared storage (Redis) does not answer a ping; the server then
    still serves, with per-worker in-memory limits (``degraded: true``).
    """
    if limiter is None or not limiter.enabled:
        return {"ok": True, "enabled": False}
    settings: RateLimitSettings | None = getattr(limiter, "settings", None)
    uri = settings.storage_uri if settings else "unknown"
    check = {
        "ok": True,
        "enabled": True,
        "storage": redact_uri(uri),
        "shared": bool(settings and settings.shared),
        "strategy": STRATEGY,
    }
    if settings:
        check["limits"] = dict(settings.limits)
    if not check["shared"]:
        return check
    try:
        reachable = bool(limiter.storage.check())
    except Exception:  # noqa: BLE001
        reachable = False
    if not reachable:
        check.update(
            ok=False,
            degraded=True,
            error="rate-limit storage unreachable; each worker limits with in-memory counters",
        )
    return check
