"""The tracking store of the ``hokusai+`` schemes: MLflow's, on the same database as our tables."""

from __future__ import annotations

from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from mlflow_hokusai_plugin.db.schema import upgrade
from mlflow_hokusai_plugin.db.urls import database_url


class HokusaiTrackingStore(SqlAlchemyStore):
    """MLflow's tracking store. Its one addition: the plugin tables are migrated when it opens,
    so a server whose registry lives elsewhere still finds them."""

    def __init__(self, store_uri: str, artifact_uri: str | None = None, *args, **kwargs) -> None:
        super().__init__(database_url(store_uri), artifact_uri, *args, **kwargs)
        upgrade(store_uri)
