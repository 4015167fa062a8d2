"""Bad input stops a flow step with one readable message, not a traceback.

Metaflow prints a :class:`MetaflowException` raised in a step as its headline and message; any
other exception comes with a full traceback, which buries "row 7 of rows.csv" under forty lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from metaflow.exception import MetaflowException

from mlflow_hokusai_plugin.core.errors import HokusaiError, ValidationError


class PipelineInputError(MetaflowException):
    """The flow's input (a parameter, a file, a row) is wrong; the message says which and why."""

    headline = "Hokusai pipeline: bad input"


class PipelineSetupError(MetaflowException):
    """The host is not set up for this run (no attester key for a plain MLflow server ...)."""

    headline = "Hokusai pipeline: setup"


@contextmanager
def stops_on_bad_input() -> Iterator[None]:
    """Turn the plugin's own errors into one-message Metaflow errors: input, or setup."""
    try:
        yield
    except ValidationError as exc:
        raise PipelineInputError(str(exc)) from None
    except HokusaiError as exc:  # SignerError and the like: the operator's to fix, not the data's
        raise PipelineSetupError(str(exc)) from None
