"""Backups of a Hokusai deployment: the database (MLflow's tables and the plugin's) and every artifact.

``create_backup`` writes a backup directory (a database dump, a copy of every artifact object and
``manifest.json`` with their checksums and the row counts), ``restore_backup`` puts it back into an
empty database and artifact root, and ``verify_backup`` proves a backup restorable by restoring it
into a scratch database and checking attestations, the audit chain and the artifacts. The
runbook is docs/backup.md.
"""

from mlflow_hokusai_plugin.backup.create import CreatedBackup, create_backup
from mlflow_hokusai_plugin.backup.errors import BackupError, DamagedBackup
from mlflow_hokusai_plugin.backup.restore import RestoredBackup, restore_backup
from mlflow_hokusai_plugin.backup.verify import Check, VerifyReport, verify_backup

__all__ = [
    "BackupError",
    "Check",
    "CreatedBackup",
    "DamagedBackup",
    "RestoredBackup",
    "VerifyReport",
    "create_backup",
    "restore_backup",
    "verify_backup",
]
