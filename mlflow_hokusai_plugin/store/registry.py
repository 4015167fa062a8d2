"""The model registry store of the ``hokusai+`` schemes.

MLflow's SQLAlchemy registry store, with two additions:

- a version created with, or later tagged with, ``hokusai.baseline`` is validated before MLflow
  writes it, then attested (see ``mlflow_hokusai_plugin.improvements``);
- every registry mutation is appended to the audit hash chain with actor and before/after.

The 3.x server calls store methods by keyword and adds arguments over time, so every override
takes ``*args, **kwargs`` and passes them on.
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from typing import Any

from mlflow.entities.model_registry import ModelVersionTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.store.model_registry.dbmodels.models import SqlModelVersionTag
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.time import get_current_time_millis

from mlflow_hokusai_plugin import prometheus_metrics
from mlflow_hokusai_plugin.audit import AuditLog
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.db.migrate import upgrade
from mlflow_hokusai_plugin.db.store import HokusaiStore
from mlflow_hokusai_plugin.db.urls import database_url
from mlflow_hokusai_plugin.improvements import Registrar
from mlflow_hokusai_plugin.server.request_context import current_actor, current_request_id

_logger = logging.getLogger(__name__)


def invalid(exc: ValidationError) -> MlflowException:
    """A ValidationError as the MLflow error every client understands (HTTP 400)."""
    return MlflowException(f"{exc.field}: {exc.message}", error_code=INVALID_PARAMETER_VALUE)


class HokusaiRegistryStore(SqlAlchemyStore):
    """MLflow's registry store that also keeps lineage, attestations and the audit chain."""

    def __init__(self, store_uri: str, tracking_uri: str | None = None, *args, **kwargs) -> None:
        super().__init__(database_url(store_uri), *args, **kwargs)
        upgrade(store_uri)
        self._store_uri = store_uri
        self._tracking_uri = tracking_uri or store_uri
        self.hokusai = HokusaiStore(self.engine)
        self.audit = AuditLog(self.engine)
        self._signer_lock = threading.Lock()
        self._signer = None

    # -- wiring -------------------------------------------------------------------------------

    @cached_property
    def registrar(self) -> Registrar:
        from mlflow_hokusai_plugin.server.config import HokusaiConfig

        config = HokusaiConfig.from_env()
        return Registrar(
            registry=_PlainRegistry(self),
            tracking=self._tracking_store,
            store=self.hokusai,
            signer=self._get_signer,
            onchain=lambda name: config.onchain_target(self.registered_model_tag(name, T.ONCHAIN_MODEL_ID)),
            audit=self.audit,
        )

    @cached_property
    def _tracking_store(self) -> Any:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

        # Only read (runs, logged models); the artifact root is irrelevant for reads.
        return TrackingStore(database_url(self._tracking_uri), "./mlruns")

    def _get_signer(self) -> Any:
        with self._signer_lock:
            if self._signer is None:
                from mlflow_hokusai_plugin.server.config import load_signer

                self._signer, _ = load_signer()
            return self._signer

    def _audit(self, action: str, target: str, before: Any = None, after: Any = None) -> None:
        self.audit.append(
            actor=current_actor(),
            action=action,
            target=target,
            before=before,
            after=after,
            request_id=current_request_id(),
        )

    # -- cheap reads for the Hokusai routes -----------------------------------------------------
    # MLflow's get_model_version and get_registered_model load tags, aliases and latest versions:
    # 70 % of a lineage request was spent in get_model_version just to learn the version exists.

    def model_exists(self, model_id: str) -> bool:
        """Whether ``name/version`` (a live version) or a bare registered-model name exists:
        one indexed SELECT, e.g. ``"churn/1"`` True, ``"churn"`` True, ``"churn/99"`` False."""
        name, _, version = model_id.partition("/")
        try:
            with self.ManagedSessionMaker() as session:
                if version:
                    self._get_sql_model_version(session, name, version)
                else:
                    self._get_registered_model(session, name)
            return True
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return False
            raise

    def registered_model_tag(self, name: str, key: str) -> str | None:
        """One tag of a registered model (MlflowException if there is no such model)."""
        with self.ManagedSessionMaker() as session:
            model = self._get_registered_model(session, name)
            return next((tag.value for tag in model.registered_model_tags if tag.key == key), None)

    # -- model versions: the Hokusai hooks ----------------------------------------------------

    def create_model_version(self, name, source, run_id=None, tags=None, *args, **kwargs):
        tags = list(tags or [])
        tag_map = {tag.key: tag.value for tag in tags}
        _refuse_server_tags(tag_map)
        improved = T.BASELINE in tag_map
        prepared = None
        if improved:
            try:
                prepared = self.registrar.validate(
                    tag_map, run_id or self._logged_model_run(source, kwargs.get("model_id"))
                )
            except ValidationError as exc:
                raise invalid(exc) from None
            tags.append(ModelVersionTag(T.ATTESTATION_STATUS, T.STATUS_PENDING))
        elif T.PROJECT in tag_map:
            tags.append(ModelVersionTag(T.ATTESTATION_STATUS, T.STATUS_NOT_APPLICABLE))
        version = super().create_model_version(name, source, run_id, tags, *args, **kwargs)
        self._audit(
            "model_version.create", _version_target(name, version.version), after=_version_state(version)
        )
        if improved and not self._complete(name, version.version, written=version, prepared=prepared):
            return self.get_model_version(name, version.version)  # failed or pending: as stored
        return version  # complete() brought it up to date with what it stored

    def set_model_version_tag(self, name, version, tag, *args, **kwargs):
        _refuse_server_tags({tag.key: tag.value})
        before = self.get_model_version(name, version)
        current = dict(before.tags or {})
        attest = False
        if tag.key in T.CLIENT_TAGS and current.get(tag.key) != tag.value:
            model_id = T.format_model_id(name, version)
            if self.hokusai.edge_of(model_id) is not None:
                raise invalid(
                    ValidationError(
                        tag.key,
                        f"{model_id} is attested; its Hokusai tags are final (register a new version)",
                    )
                )
            merged = {**current, tag.key: tag.value}
            if T.BASELINE in merged and _has_all_client_tags(merged):
                try:
                    self.registrar.validate(merged, before.run_id, child_model_id=model_id)
                except ValidationError as exc:
                    raise invalid(exc) from None
                attest = True
        super().set_model_version_tag(name, version, tag, *args, **kwargs)
        if attest:
            super().set_model_version_tag(
                name, version, ModelVersionTag(T.ATTESTATION_STATUS, T.STATUS_PENDING)
            )
        self._audit(
            "model_version.set_tag",
            _version_target(name, version),
            before={tag.key: current.get(tag.key)},
            after={tag.key: tag.value},
        )
        if attest:
            self._complete(name, version)

    def delete_model_version_tag(self, name, version, key, *args, **kwargs):
        if key in T.SERVER_TAGS:
            raise invalid(ValidationError(key, "is written by the Hokusai server and cannot be deleted"))
        model_id = T.format_model_id(name, version)
        if key in T.CLIENT_TAGS and self.hokusai.edge_of(model_id) is not None:
            raise invalid(ValidationError(key, f"{model_id} is attested; its Hokusai tags are final"))
        before = self.get_model_version(name, version).tags.get(key)
        super().delete_model_version_tag(name, version, key, *args, **kwargs)
        self._audit("model_version.delete_tag", _version_target(name, version), before={key: before})

    def _logged_model_run(self, source: str, model_id: str | None) -> str | None:
        """The source run of a 3.x logged model, as MLflow itself fills it in on creation."""
        if not model_id and source.startswith("models:/m-"):
            model_id = source[len("models:/") :].split("/", 1)[0]
        return self._tracking_store.get_logged_model(model_id).source_run_id if model_id else None

    def _complete(self, name: str, version: str | int, **known: Any) -> bool:
        """Attest the version; False when it failed (tagged so) or is left pending."""
        try:
            self.registrar.complete(name, version, **known)
            return True
        except ValidationError as exc:
            _logger.error("Hokusai attestation of %s/%s failed: %s", name, version, exc)
            prometheus_metrics.attestation_failed()
            super().set_model_version_tag(
                name, version, ModelVersionTag(T.ATTESTATION_STATUS, T.STATUS_FAILED)
            )
        except Exception:
            # Infrastructure (artifact store, database) failed: stay pending for the reconciler.
            _logger.exception("Hokusai attestation of %s/%s is left pending", name, version)
        return False

    # -- model versions: audited as they are --------------------------------------------------

    def update_model_version(self, name, version, *args, **kwargs):
        before = _version_state(self.get_model_version(name, version))
        result = super().update_model_version(name, version, *args, **kwargs)
        self._audit("model_version.update", _version_target(name, version), before, _version_state(result))
        return result

    def transition_model_version_stage(self, name, version, *args, **kwargs):
        before = _version_state(self.get_model_version(name, version))
        result = super().transition_model_version_stage(name, version, *args, **kwargs)
        self._audit(
            "model_version.transition_stage", _version_target(name, version), before, _version_state(result)
        )
        return result

    def delete_model_version(self, name, version, *args, **kwargs):
        before = _version_state(self.get_model_version(name, version))
        super().delete_model_version(name, version, *args, **kwargs)
        self._audit("model_version.delete", _version_target(name, version), before=before)

    # -- registered models and aliases: audited -----------------------------------------------

    def create_registered_model(self, name, *args, **kwargs):
        result = super().create_registered_model(name, *args, **kwargs)
        self._audit("registered_model.create", _model_target(name), after=_model_state(result))
        return result

    def update_registered_model(self, name, *args, **kwargs):
        before = _model_state(self.get_registered_model(name))
        result = super().update_registered_model(name, *args, **kwargs)
        self._audit("registered_model.update", _model_target(name), before, _model_state(result))
        return result

    def rename_registered_model(self, name, new_name, *args, **kwargs):
        result = super().rename_registered_model(name, new_name, *args, **kwargs)
        self._audit("registered_model.rename", _model_target(name), {"name": name}, {"name": new_name})
        return result

    def delete_registered_model(self, name, *args, **kwargs):
        before = _model_state(self.get_registered_model(name))
        super().delete_registered_model(name, *args, **kwargs)
        self._audit("registered_model.delete", _model_target(name), before=before)

    def set_registered_model_tag(self, name, tag, *args, **kwargs):
        before = self.get_registered_model(name).tags.get(tag.key)
        super().set_registered_model_tag(name, tag, *args, **kwargs)
        self._audit("registered_model.set_tag", _model_target(name), {tag.key: before}, {tag.key: tag.value})

    def delete_registered_model_tag(self, name, key, *args, **kwargs):
        before = self.get_registered_model(name).tags.get(key)
        super().delete_registered_model_tag(name, key, *args, **kwargs)
        self._audit("registered_model.delete_tag", _model_target(name), before={key: before})

    def set_registered_model_alias(self, name, alias, version, *args, **kwargs):
        before = self.get_registered_model(name).aliases.get(alias)
        result = super().set_registered_model_alias(name, alias, version, *args, **kwargs)
        self._audit("registered_model.set_alias", _model_target(name), {alias: before}, {alias: str(version)})
        return result

    def delete_registered_model_alias(self, name, alias, *args, **kwargs):
        before = self.get_registered_model(name).aliases.get(alias)
        super().delete_registered_model_alias(name, alias, *args, **kwargs)
        self._audit("registered_model.delete_alias", _model_target(name), before={alias: before})


class _PlainRegistry:
    """The registrar's view of the registry: MLflow's own methods, without our hooks."""

    def __init__(self, store: HokusaiRegistryStore) -> None:
        self._store = store

    def get_model_version(self, name, version):
        return self._store.get_model_version(name, str(version))

    def registered_model_tag(self, name: str, key: str) -> str | None:
        return self._store.registered_model_tag(name, key)

    def set_tag(self, name, version, key, value) -> None:
        tag = ModelVersionTag(key, value)
        try:
            SqlAlchemyStore.set_model_version_tag(self._store, name, str(version), tag)
        except Exception:
            # MLflow inserts a new tag with SELECT-then-INSERT: a concurrent writer of the same
            # tag (two improvements of one baseline writing its digest) loses on the primary
            # key. Now the row exists: done if it holds our value, else this retry updates it.
            if self.get_model_version(name, version).tags.get(key) == value:
                return
            SqlAlchemyStore.set_model_version_tag(self._store, name, str(version), tag)

    def set_tags(
        self,
        name: str,
        version: str | int,
        tags: dict[str, str],
        description: str | None = None,
        updated_at: int | None = None,
    ) -> None:
        """Tags (and the description) of one version in one transaction: all visible, or none.

        MLflow's own methods would take a transaction per tag; these rows are the ones
        ``set_model_version_tag`` and ``update_model_version`` write (tag keys and values here
        are the server's own, already valid).
        """
        try:
            self._write_in_one_transaction(name, int(version), tags, description, updated_at)
        except Exception:
            # A concurrent writer inserted one of these tags first (MLflow's SELECT-then-INSERT
            # loses on the primary key): now the rows exist and the retry updates them.
            self._write_in_one_transaction(name, int(version), tags, description, updated_at)

    def _write_in_one_transaction(
        self, name: str, version: int, tags: dict, description: str | None, updated_at: int | None
    ) -> None:
        with _write_session(self._store) as session:
            row = self._store._get_sql_model_version(session, name, version)
            if description is not None:
                row.description = description
                row.last_updated_time = updated_at or get_current_time_millis()
            # The version's tags in one SELECT, rather than one merge (a SELECT each) per tag.
            existing = {tag.key: tag for tag in row.model_version_tags}
            # MLflow 3.5+ keys every registry row by workspace too.
            scope = {"workspace": row.workspace} if hasattr(row, "workspace") else {}
            for key, value in tags.items():
                if key in existing:
                    existing[key].value = value
                else:
                    session.add(SqlModelVersionTag(**scope, name=name, version=version, key=key, value=value))

    def pending_versions(self) -> list[tuple[str, str]]:
        found, token = [], None
        while True:
            page = self._store.search_model_versions(
                f"tags.`{T.ATTESTATION_STATUS}` = '{T.STATUS_PENDING}'", max_results=1000, page_token=token
            )
            found += [(v.name, v.version) for v in page]
            token = page.token
            if not token:
                return found


def _write_session(store: SqlAlchemyStore) -> Any:
    """A session of MLflow's store that may write (recent MLflow makes them read-only by default)."""
    try:
        return store.ManagedSessionMaker(read_only=False)
    except TypeError:  # an MLflow from before read replicas: every session may write
        return store.ManagedSessionMaker()


def _refuse_server_tags(tag_map: dict[str, str]) -> None:
    for key in tag_map:
        if key in T.SERVER_TAGS:
            raise invalid(ValidationError(key, "is written by the Hokusai server, not by clients"))


def _has_all_client_tags(tags: dict[str, str]) -> bool:
    # Tags set one at a time: attest once the last required one arrives.
    return all(
        tags.get(key) for key in (T.PROJECT, T.MODEL_TYPE, T.BASELINE, T.BENCHMARK_METRIC, T.CONTRIBUTORS)
    )


def _version_target(name: str, version: Any) -> str:
    return f"model_version:{name}/{version}"


def _model_target(name: str) -> str:
    return f"registered_model:{name}"


def _version_state(version: Any) -> dict:
    return {
        "name": version.name,
        "version": str(version.version),
        "source": version.source,
        "run_id": version.run_id,
        "description": version.description,
        "stage": version.current_stage,
        "tags": dict(version.tags or {}),
    }


def _model_state(model: Any) -> dict:
    return {"name": model.name, "description": model.description, "tags": dict(model.tags or {})}
