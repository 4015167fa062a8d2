"""The two kinds of store database behind one choice: each module has ``DUMP_FILE``,
``DUMP_FORMAT``, ``check_source``, ``check_target``, ``dump``, ``restore`` and ``is_empty``."""

from __future__ import annotations

from types import ModuleType

from mlflow_hokusai_plugin.backup import postgres, sqlite

_KINDS = {"postgresql": postgres, "sqlite": sqlite}


def for_dialect(dialect: str) -> ModuleType:
    """The module that backs up and restores ``dialect`` (``postgresql`` or ``sqlite``)."""
    return _KINDS[dialect]
