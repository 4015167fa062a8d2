"""Detach the records of registered models deleted before records followed their model.

Until now a deleted model's records stayed under its name and passed to any later model of that
name. Records whose registered model no longer exists get the name of a deleted model
(``<name>:deleted:0``: deleted at an unknown time), as ``db/model_names.py`` gives them from now on.

Revision ID: 0005_detach_deleted_models
Revises: 0004_contributor_totals
"""

import sqlalchemy as sa
from alembic import op

from mlflow_hokusai_plugin.db.model_names import MODEL_ID_COLUMNS, detach_model_records

revision = "0005_detach_deleted_models"
down_revision = "0004_contributor_totals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    if "registered_models" not in sa.inspect(connection).get_table_names():
        return  # the plugin tables alone (hokusai db upgrade on an empty database): nothing to detach
    live = {row[0] for row in connection.execute(sa.text("SELECT name FROM registered_models"))}
    named = set()
    for table, column in MODEL_ID_COLUMNS:
        for (model_id,) in connection.execute(sa.text(f"SELECT DISTINCT {column} FROM {table}")):  # noqa: S608
            named.add(model_id.rpartition("/")[0])
    for name in sorted(named - live):
        if ":" not in name:  # already a deleted model's name
            detach_model_records(connection, name, 0)


def downgrade() -> None:
    """Nothing to undo: the records of a deleted model are not given back to its name."""
