"""A Hokusai request's query string and JSON body, parsed by the models its route declares.

Bad input is a :class:`ValidationError` naming the field, which the app answers with a 400: the
view only ever sees a validated model.
"""

from __future__ import annotations

import json
from typing import Any

from flask import g, request
from pydantic import BaseModel

from mlflow_hokusai_plugin.core.canonical import parse_json
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.server import schemas as S


class NonFinite(ValidationError):
    """A number in a JSON body that is not finite: NaN, Infinity, or beyond the float range."""


def strict_json(raw: bytes) -> Any:
    """The strict JSON of a body (``parse_json``), with NaN, Infinity and numbers beyond the float
    range (``1e999`` parses as infinity) refused as :class:`NonFinite`, naming the field."""
    try:
        data = parse_json(raw, "body")
    except ValidationError as exc:
        if not exc.message.endswith(" is not JSON"):  # not a NaN / Infinity literal
            raise
        # Parsed again, keeping the literal, only to say which field holds it (parse_json has
        # already checked the nesting depth, so this parse is safe).
        try:
            data = json.loads(raw, parse_constant=float)
        except ValueError:
            raise exc from None
    found = S.find_non_finite(data)
    if found:
        raise NonFinite(*found)
    return data


def body_data() -> Any:
    """The request's JSON body as sent (parsed once per request); no body is a ValidationError."""
    if "hokusai_body_data" not in g:
        raw = request.get_data(cache=True)
        if not raw.strip():
            raise ValidationError("body", "a JSON object is required")
        g.hokusai_body_data = strict_json(raw)
    return g.hokusai_body_data


def parsed_body(model: type[BaseModel]) -> Any:
    """``model`` validated from the JSON body."""
    return S.validate(model, body_data())


def parsed_query(model: type[BaseModel]) -> Any:
    """``model`` validated from the query string: its own parameters only (others are ignored, as
    MLflow ignores them), an empty value taken as absent, numbers and names from their text."""
    data = {name: request.args[name] for name in model.model_fields if request.args.get(name, "") != ""}
    return S.validate(model, data, strict=False)
