"""Keep the plugin's records on their registered model through MLflow's rename and delete.

MLflow renames or deletes a registered model in one session of its own. A listener on that
session's flush sees the registered-model row change (its name's history, or its deletion) and
updates the plugin's records on the same connection, so both commit or roll back together: a
crash cannot leave the records on the old name (``db/model_names.py`` says why that matters).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from mlflow_hokusai_plugin.db.model_names import detach_model_records, rename_model_records
from mlflow_hokusai_plugin.db.records import now_ms

# The registry engines whose databases hold the plugin tables (the listener is process-wide).
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
_installed = threading.Lock()
_listening = False


def follow_model_renames(engine: Engine) -> None:
    """Make renames and deletes of registered models through ``engine`` carry the plugin records."""
    global _listening
    _ENGINES.add(engine)
    with _installed:
        if not _listening:
            event.listen(Session, "after_flush", _after_flush)
            _listening = True


def _after_flush(session: Session, _flush_context: Any) -> None:
    from mlflow.store.model_registry.dbmodels.models import SqlRegisteredModel

    changed = [obj for obj in session.dirty if isinstance(obj, SqlRegisteredModel)]
    deleted = [obj for obj in session.deleted if isinstance(obj, SqlRegisteredModel)]
    if not (changed or deleted):
        return
    if session.get_bind() not in _ENGINES:
        return
    connection = session.connection()
    for model in changed:
        history = inspect(model).attrs.name.history
        if history.deleted and history.added and history.deleted[0] != history.added[0]:
            rename_model_records(connection, history.deleted[0], history.added[0])
    for model in deleted:
        detach_model_records(connection, model.name, now_ms())
