"""Database URLs: the ``hokusai+`` store schemes and the SQLAlchemy URLs behind them."""

from __future__ import annotations

from mlflow_hokusai_plugin.core.errors import ValidationError

SCHEME_PREFIX = "hokusai+"
SUPPORTED = ("postgresql", "sqlite")


def database_url(store_uri: str) -> str:
    """The SQLAlchemy URL of a store URI, with or without the ``hokusai+`` prefix.

    A bare ``postgresql://`` names the psycopg2 driver explicitly, because SQLAlchemy 2.1 maps it
    to psycopg 3, which this package does not install.

    >>> database_url("hokusai+postgresql://u@db:5432/mlflow")
    'postgresql+psycopg2://u@db:5432/mlflow'
    >>> database_url("hokusai+sqlite:///mlflow.db")
    'sqlite:///mlflow.db'
    """
    uri = store_uri[len(SCHEME_PREFIX) :] if store_uri.startswith(SCHEME_PREFIX) else store_uri
    dialect = uri.split(":", 1)[0].split("+", 1)[0]
    if dialect not in SUPPORTED or "://" not in uri:
        raise ValidationError(
            "store_uri",
            f"{store_uri!r} is not a PostgreSQL or SQLite URL (hokusai+postgresql://, hokusai+sqlite://)",
        )
    if uri.startswith("postgresql://"):
        uri = "postgresql+psycopg2://" + uri[len("postgresql://") :]
    return uri
