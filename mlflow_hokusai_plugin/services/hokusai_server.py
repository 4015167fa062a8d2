"""Is the tracking server a Hokusai server? Then it attests, and the services must not sign."""

from __future__ import annotations

import functools
from typing import Any

from mlflow.exceptions import MlflowException

from mlflow_hokusai_plugin.core.errors import ValidationError


@functools.lru_cache(maxsize=32)
def hokusai_app_client(tracking_uri: str) -> Any | None:
    """The app client of a Hokusai server at ``tracking_uri``, or None for any other store."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    from mlflow_hokusai_plugin.client.app_client import HokusaiAppClient

    client = HokusaiAppClient(tracking_uri)
    try:
        client.health_live()
    except MlflowException:
        return None
    return client


def as_validation_error(exc: MlflowException) -> Exception:
    """The server's INVALID_PARAMETER_VALUE (``"<field>: <message>"``) as our ValidationError."""
    if getattr(exc, "error_code", "") != "INVALID_PARAMETER_VALUE":
        return exc
    # RestException keeps the server's JSON; its .message is prefixed with the error code.
    text = (getattr(exc, "json", None) or {}).get("message") or exc.message
    field, _, message = text.partition(": ")
    return ValidationError(field, message) if message else ValidationError("request", text)
