"""Client of the Hokusai REST routes of an MLflow server started with ``--app-name hokusai``.

Obtain it the way MLflow's own app clients are obtained::

    import mlflow.server

    client = mlflow.server.get_app_client("hokusai", tracking_uri="http://127.0.0.1:5000")
    client.health_live()  # {'status': 'ok'}
    client.get_lineage("churn/3")

Requests go through MLflow's own HTTP layer (``mlflow.utils.rest_utils.http_request``) with the
host credentials of a plain MLflow client, so ``MLFLOW_TRACKING_TOKEN``,
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``, TLS settings, request header providers
and MLflow's retry policy apply unchanged. Routes and error shape: ``contract.md``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

from mlflow.exceptions import MlflowException, RestException, get_error_code
from mlflow.protos.databricks_pb2 import ErrorCode
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request

API_PREFIX = "/api/2.0/hokusai"

# How much of a non-JSON error body (an HTML 404 page, a proxy's message) goes into the exception.
_BODY_EXCERPT = 300


class HokusaiAppClient:
    """Hokusai services of one MLflow tracking server.

    Every method returns the decoded JSON answer. A non-2xx answer raises
    :class:`mlflow.exceptions.RestException` built from the JSON body (MLflow-shaped,
    ``{"error_code": ..., "message": ...}``, on a Hokusai server), or
    :class:`mlflow.exceptions.MlflowException` with an error code derived from the HTTP status when
    the body is not JSON (e.g. the HTML 404 of a server without the Hokusai app).
    """

    def __init__(self, tracking_uri: str) -> None:
        """
        Args:
            tracking_uri: Address of the MLflow tracking server, e.g. ``http://127.0.0.1:5000``.
        """
        self.tracking_uri = tracking_uri

    # --- health ------------------------------------------------------------------------------

    def health_live(self) -> dict:
        """Whether the server process answers (``GET /health/live``); never retried."""
        return self._request("GET", "/health/live", max_retries=0)

    def health_ready(self) -> dict:
        """Whether the server can serve (``GET /health/ready``); never retried.

        A probe wants the state now: MLflow's retry policy would turn a 503 "not ready" into
        minutes of back-off. A server that is not ready answers 503, which raises a
        :class:`RestException` (``TEMPORARILY_UNAVAILABLE``) whose ``json`` is the readiness
        report with its failing ``checks``.
        """
        return self._request("GET", "/health/ready", max_retries=0)

    # --- models and lineage ------------------------------------------------------------------

    def register_model(self, idempotency_key: str | None = None, **fields: Any) -> dict:
        """Register a model version through the Hokusai server (``POST /models/register``).

        ``fields`` is the request body (``name``, ``model_uri``, ``project``, ``model_type``,
        ``benchmark_metric``, ``baseline``, ``contributors``, ``pipeline_run_id``,
        ``description``), e.g. ``register_model(name="churn", model_uri="runs:/<id>/model",
        project="churn", model_type="classification", benchmark_metric="accuracy",
        baseline="churn/1", contributors=[{"address": "0x..", "samples": 1200}])``.

        The request carries an ``Idempotency-Key``: ``idempotency_key`` when given (reuse it to
        retry safely across processes), else a fresh one, so that MLflow's own retries of this call
        can never register the version twice. Returns the model id, the version, the upstream
        lineage, the deltas, DeltaOne and the attestation id and status.
        """
        key = idempotency_key or f"hokusai-client-{uuid.uuid4()}"
        return self._request("POST", "/models/register", json=fields, extra_headers={"Idempotency-Key": key})

    def get_lineage(self, model_id: str, direction: str = "both", max_depth: int | None = None) -> dict:
        """The lineage of ``model_id`` (``"<registered model name>/<version>"``).

        Args:
            model_id: e.g. ``"churn/3"``.
            direction: which side of the model to walk; ``"both"`` gives baselines and successors.
            max_depth: at most this many hops; ``None`` lets the server decide.
        """
        return self._request(
            "GET",
            f"/models/{_segment(model_id, keep_slash=True)}/lineage",
            params=_params(direction=direction, max_depth=max_depth),
        )

    def list_projects(self) -> dict:
        """The Hokusai projects known to the server (``GET /projects``)."""
        return self._request("GET", "/projects")

    # --- contributors ------------------------------------------------------------------------

    def get_contributor_impact(
        self, address: str, max_results: int | None = None, page_token: str | None = None
    ) -> dict:
        """The impact of a data contributor's Ethereum address, one page of contributions at a time.

        Pass the answer's ``next_page_token`` (when present) as ``page_token`` to get the next page.
        """
        return self._request(
            "GET",
            f"/contributors/{_segment(address)}/impact",
            params=_params(max_results=max_results, page_token=page_token),
        )

    # --- attestations ------------------------------------------------------------------------

    def get_attestation(self, attestation_id: str) -> dict:
        """The attestation document (DSSE envelope, and EIP-712 data when applicable)."""
        return self._request("GET", f"/attestations/{_segment(attestation_id)}")

    def renew_attestation(self, attestation_id: str) -> dict:
        """Have the server sign the attestation's EIP-712 MintRequest again with a fresh deadline
        (``POST /attestations/<id>/renew``, write role) and return the renewed document.

        The DSSE Statement, ``attestationHash`` and ``idempotencyKey`` are unchanged; a document of
        the MintRequest types of before 2026-06-10 comes back with today's. Nothing to renew (no
        on-chain model id) raises a :class:`RestException` (HTTP 400) with the server's message.
        """
        return self._request("POST", f"/attestations/{_segment(attestation_id)}/renew")

    def list_attestations(self, model_id: str) -> dict:
        """The attestations about ``model_id`` (``GET /attestations?model_id=...``)."""
        return self._request("GET", "/attestations", params={"model_id": model_id})

    def verify_attestation(
        self, document_or_envelope: dict, attesters: list[str] | None = None, threshold: int = 1
    ) -> dict:
        """Have the server verify an attestation document or a bare DSSE envelope.

        Args:
            document_or_envelope: a document as returned by :meth:`get_attestation`, or its
                ``dsse`` envelope alone.
            attesters: Ethereum addresses whose signatures count; ``None`` leaves the choice to the
                server (its own attester).
            threshold: how many distinct listed attesters must have signed (m of n).

        The verdict does not need the server: ``hokusai attestation verify`` and eth-account
        alone check the same signatures offline (``docs/attestation.md``).
        """
        body: dict[str, Any] = {"document": document_or_envelope, "threshold": threshold}
        if attesters is not None:
            body["attesters"] = list(attesters)
        return self._request("POST", "/attestations/verify", json=body)

    # --- description -------------------------------------------------------------------------

    def openapi(self) -> dict:
        """The OpenAPI description of the Hokusai routes (``GET /openapi.json``)."""
        return self._request("GET", "/openapi.json")

    # --- transport ---------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The absolute URL of a Hokusai route, e.g. ``url("/projects")``.

        >>> HokusaiAppClient("http://mlflow:5000/").url("/projects")
        'http://mlflow:5000/api/2.0/hokusai/projects'
        """
        return self.tracking_uri.rstrip("/") + API_PREFIX + path

    def _request(self, method: str, path: str, *, max_retries: int | None = None, **kwargs: Any) -> dict:
        endpoint = API_PREFIX + path
        response = http_request(
            get_default_host_creds(self.tracking_uri),
            endpoint,
            method,
            max_retries=max_retries,
            # Give back the last answer once retries are spent, so its body reaches the exception
            # instead of urllib3's "max retries exceeded".
            raise_on_status=False,
            **kwargs,
        )
        body = _json_object(response.text)
        if 200 <= response.status_code < 300:
            if body is None and response.text.strip():
                raise MlflowException(
                    f"Hokusai API {method} {endpoint} answered HTTP {response.status_code} with a body "
                    f"that is not a JSON object: {_excerpt(response.text)!r}"
                )
            return body or {}
        raise _error(response.status_code, body, response.text, f"{method} {endpoint}", self.tracking_uri)


def _error(status: int, body: dict | None, text: str, request: str, tracking_uri: str) -> MlflowException:
    """The exception for a non-2xx answer, keeping whatever the server said.

    A JSON object becomes a :class:`RestException` whose ``json`` is that object; a body without
    ``error_code`` (a readiness report, a proxy's JSON) gets one from the HTTP status, and one
    without ``message`` gets a sentence naming the request. Anything else (an HTML 404 page)
    becomes an :class:`MlflowException` with the start of the body.
    """
    hint = ""
    if status == 404 and (body is None or "error_code" not in body):
        # A Hokusai server answers its own 404s MLflow-style; a bare 404 means no Hokusai routes.
        hint = (
            f" The server at {tracking_uri} has no Hokusai routes:"
            " is it started with `mlflow server --app-name hokusai`?"
        )
    if body is not None:
        error = dict(body)
        error.setdefault("error_code", ErrorCode.Name(get_error_code(status)))
        error.setdefault(
            "message", f"Hokusai API {request} failed with HTTP {status}.{hint} Response: {body}"
        )
        return RestException(error)
    return MlflowException(
        f"Hokusai API {request} failed with HTTP {status}.{hint} Response body: {_excerpt(text)!r}",
        error_code=get_error_code(status),
    )


def _segment(value: str, keep_slash: bool = False) -> str:
    """``value`` as one URL path segment (or, for model ids, segments joined by their ``/``).

    Model ids are ``"<name>/<version>"`` and MLflow forbids ``/`` in names, so the slash is kept
    literal (WSGI decodes ``%2F`` back to ``/`` anyway); anything else, including spaces, ``?``
    and ``#`` that MLflow allows in names, is percent-encoded.

    >>> _segment("my model/3", keep_slash=True)
    'my%20model/3'
    """
    return quote(str(value), safe="/" if keep_slash else "")


def _params(**values: Any) -> dict[str, Any]:
    """Query parameters without the ones left at ``None`` (the server's default applies)."""
    return {name: value for name, value in values.items() if value is not None}


def _excerpt(text: str) -> str:
    """The start of a body on one line: HTML error pages are mostly whitespace and markup."""
    return " ".join(text.split())[:_BODY_EXCERPT]


def _json_object(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
