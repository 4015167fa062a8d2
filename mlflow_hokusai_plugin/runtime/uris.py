"""URIs made safe to show or to keep: store, tracking and storage URIs without their password.

SQLAlchemy parses them (``make_url``), the parser the stores connect with, so the password
hidden is exactly the one a connection would use, whatever ``:``, ``/`` or ``@`` it holds.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def redact_uri(uri: str) -> str:
    """``uri`` with its password shown as ``***``, for logs, readiness and messages.

    >>> redact_uri("hokusai+postgresql://mlflow:s3cret@db:5432/mlflow?sslmode=require")
    'hokusai+postgresql://mlflow:***@db:5432/mlflow?sslmode=require'
    >>> redact_uri("redis://:s3cret@cache:6379/2")
    'redis://:***@cache:6379/2'
    >>> redact_uri("https://me:token@mlflow.example.org/x")
    'https://me:***@mlflow.example.org/x'
    >>> redact_uri("memory://"), redact_uri("./mlartifacts")
    ('memory://', './mlartifacts')
    >>> redact_uri("redis+sentinel://:pw@h1:26379,h2:26379/main")  # no SQLAlchemy URL: all userinfo
    'redis+sentinel://***@h1:26379,h2:26379/main'
    """
    try:
        return make_url(uri).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        scheme, separator, rest = uri.partition("://")
        if not separator or "@" not in rest:
            return uri
        return f"{scheme}://***@{rest.rpartition('@')[2]}"


def without_password(uri: str) -> str:
    """``uri`` with no password at all: what a backup manifest keeps, so that a later check can
    connect with the password from the environment (``PGPASSWORD``, ``.pgpass``).

    >>> without_password("hokusai+postgresql://u:pa/ss@db:5433/m?sslmode=require")
    'hokusai+postgresql://u@db:5433/m?sslmode=require'
    >>> without_password("hokusai+sqlite:////srv/mlflow.db")
    'hokusai+sqlite:////srv/mlflow.db'
    """
    try:
        url = make_url(uri)
    except (ArgumentError, ValueError):
        return redact_uri(uri)
    # URL.set() takes None as "unchanged"; URL is a named tuple, and _replace is its public API.
    return url._replace(password=None).render_as_string(hide_password=False)
