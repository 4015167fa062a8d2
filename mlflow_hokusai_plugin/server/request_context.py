"""Who is asking, and which request this is: for the audit log and the logs.

Inside a Flask request the app's ``before_request`` hook has set ``flask.g.hokusai_actor`` and
``flask.g.hokusai_request_id``; outside one (the CLI, the reconciler) the actor is ``system``.
"""

from __future__ import annotations

import uuid

REQUEST_ID_HEADER = "X-Request-Id"


def current_actor() -> str:
    try:
        from flask import g, has_request_context, request
    except ImportError:  # pragma: no cover - flask is a dependency; kept for the CLI's sake
        return "system"
    if not has_request_context():
        return "system"
    actor = getattr(g, "hokusai_actor", None)
    if actor:
        return actor
    auth = request.authorization
    if auth is not None and auth.username:
        return f"user:{auth.username}"
    return f"anonymous@{request.remote_addr or 'unknown'}"


def current_request_id() -> str | None:
    try:
        from flask import g, has_request_context, request
    except ImportError:  # pragma: no cover
        return None
    if not has_request_context():
        return None
    if not getattr(g, "hokusai_request_id", None):
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.hokusai_request_id = incoming[:64] if incoming.isprintable() and incoming else uuid.uuid4().hex
    return g.hokusai_request_id
