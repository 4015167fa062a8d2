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
    username = basic_auth_username(request)
    if username:
        return f"user:{username}"
    return f"anonymous@{request.remote_addr or 'unknown'}"


def basic_auth_username(request) -> str | None:
    """The basic-auth user name of a Flask request, or None.

    Werkzeug's ``request.authorization`` raises ValueError for a ``Basic`` value with non-ASCII
    characters (it would be a 500); such a header names nobody.
    """
    try:
        auth = request.authorization
    except ValueError:
        return None
    return auth.username if auth is not None and auth.username else None


def current_request_id() -> str | None:
    try:
        from flask import g, has_request_context, request
    except ImportError:  # pragma: no cover
        return None
    if not has_request_context():
        return None
    if not getattr(g, "hokusai_request_id", None):
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        # Echoed in a response header, which the WSGI bridge encodes as ASCII: anything else is
        # replaced, not echoed (a non-ASCII id was a 500 on every API route).
        usable = incoming and incoming.isascii() and incoming.isprintable()
        g.hokusai_request_id = incoming[:64] if usable else uuid.uuid4().hex
    return g.hokusai_request_id
