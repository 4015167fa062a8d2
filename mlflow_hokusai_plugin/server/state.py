"""Where a view finds the app's Hokusai state (stores, config, attester): one Flask extension."""

from __future__ import annotations

from typing import Any

from flask import current_app

EXTENSION = "hokusai"


def hokusai_state() -> Any:
    """The ``HokusaiState`` of the app serving this request (``server.app`` builds it)."""
    return current_app.extensions[EXTENSION]
