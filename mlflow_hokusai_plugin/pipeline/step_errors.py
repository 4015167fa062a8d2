"""Bad input stops a flow step with one readable message, not a traceback.

Metaflow prints a :class:`MetaflowException` raised in a step as its headline and message; any
other exception comes with a full traceback, which buries "row 7 of rows.csv" under forty lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from metaflow.exception import MetaflowException

from mlflow_hokusai_plugin.core.errors import HokusaiError


class PipelineInputError(MetaflowException):
    """The flow's input (a parameter, a file, a row) is wrong; the message says which and why."""

    headline = "Hokusai pipeline: bad input"


@contextmanager
def stops_on_bad_input() -> Iterator[None]:
    """Turn the plugin's own errors (ValidationError, SignerError ...) into PipelineInputError."""
    try:
        yield
    except HokusaiError as exc:
        raise PipelineInputError(str(exc)) from None
