"""The two ways a backup command stops: bad input or environment, and a damaged backup.

Both are one-line messages for the CLI. Messages never carry a password: every place that builds
one from a URL or from a tool's output goes through :func:`mlflow_hokusai_plugin.backup.uris.redact`.
"""

from __future__ import annotations

from mlflow_hokusai_plugin.core.errors import HokusaiError


class BackupError(HokusaiError):
    """The command cannot do its job: a missing tool, an unreachable database, a missing bucket..."""


class DamagedBackup(BackupError):
    """A backup's files are not what its manifest says (changed, truncated or missing)."""
