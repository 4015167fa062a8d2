"""The model registry store of the ``hokusai+`` schemes.

MLflow's SQLAlchemy registry store, with two additions:

- a version created with, or later tagged with, ``hokusai.baseline`` is validated before MLflow
  writes it, then attested (see ``mlflow_hokusai_plugin.store.registrar``);
- every registry mutation is appended to the audit hash chain with actor and before/after;
- the guards on Hokusai facts (the "guards" section below, docs/server.md "Guards"): tag keys of
  the ``hokusai.`` namespace spelled exactly and at their level, server tags written only by the
  server, a version in its registered model's project, an improvement in its baseline's project,
  and the server's summary kept in an attested version's description.

The 3.x server calls store methods by keyword and adds arguments over time, so every override
takes ``*args, **kwargs`` and passes them on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

from mlflow.entities.model_registry import ModelVersionTag
from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlModelVersionTag,
    SqlRegisteredModel,
    SqlRegisteredModelTag,
)
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.time import get_current_time_millis
from mlflow.utils.validation import (
    _validate_model_name,
    _validate_model_version,
    _validate_model_version_tag,
    _validate_registered_model_tag,
)

from mlflow_hokusai_plugin.core import storage_bounds as bounds
from mlflow_hokusai_plugin.core import summary
from mlflow_hokusai_plugin.core import tags as T
from mlflow_hokusai_plugin.core.errors import ValidationError
from mlflow_hokusai_plugin.db.audit import AuditLog
from mlflow_hokusai_plugin.db.records import HokusaiStore
from mlflow_hokusai_plugin.db.schema import upgrade
from mlflow_hokusai_plugin.db.urls import database_url
from mlflow_hokusai_plugin.runtime import metrics as prometheus_metrics
from mlflow_hokusai_plugin.runtime.request_context import current_actor, current_request_id
from mlflow_hokusai_plugin.store.registrar import Registrar
from mlflow_hokusai_plugin.store.renames import follow_model_renames

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
        # Lineage, attestations and contributions follow the model through rename and delete.
        follow_model_renames(self.engine)
        self._signer_lock = threading.Lock()
        self._signer = None

    # -- wiring -------------------------------------------------------------------------------

    @cached_property
    def _config(self) -> Any:
        from mlflow_hokusai_plugin.runtime.config import HokusaiConfig

        return HokusaiConfig.from_env()

    @cached_property
    def registrar(self) -> Registrar:
        config = self._config
        return Registrar(
            registry=_PlainRegistry(self),
            tracking=self._tracking_store,
            store=self.hokusai,
            signer=self._get_signer,
            onchain=lambda name: config.onchain_target(self.registered_model_tag(name, T.ONCHAIN_MODEL_ID)),
            deadline=lambda: config.deadline(time.time()),
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
                from mlflow_hokusai_plugin.runtime.config import load_signer

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
        # After the tags: (run_link, description, ...).
        _check_description(_argument(args, kwargs, "description", 1))
        adopt = self._check_version_project(name, tag_map.get(T.PROJECT))
        improved = T.BASELINE in tag_map
        prepared = None
        if improved:
            self._check_baseline_project(name, tag_map)
            try:
                prepared = self.registrar.validate(
                    tag_map, run_id or self._logged_model_run(source, kwargs.get("model_id"))
                )
            except ValidationError as exc:
                raise invalid(exc) from None
            tags.append(ModelVersionTag(T.ATTESTATION_STATUS, T.STATUS_PENDING))
        elif T.PROJECT in tag_map:
            tags.append(ModelVersionTag(T.ATTESTATION_STATUS, T.STATUS_NOT_APPLICABLE))
        adopted = self._adopt_project(name, adopt)
        try:
            version = super().create_model_version(name, source, run_id, tags, *args, **kwargs)
        except BaseException:
            self._undo_adoption(name, adopted)
            raise
        self._confirm_version_project(name, version, adopted)
        self._audit(
            "model_version.create", _version_target(name, version.version), after=_version_state(version)
        )
        if improved and not self._complete(name, version.version, written=version, prepared=prepared):
            return self.get_model_version(name, version.version)  # failed or pending: as stored
        if not improved and T.PROJECT in tag_map:
            # A baseline's digest is its model's on-chain genesis: known from the start.
            self.registrar.record_artifact_digest(version)
        return version  # brought up to date with what was stored

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
            if tag.key == T.PROJECT:
                self._check_version_project(name, tag.value, version)
            if T.BASELINE in merged and _has_all_client_tags(merged):
                self._check_baseline_project(name, merged)
                try:
                    self.registrar.validate(merged, before.run_id, child_model_id=model_id)
                except ValidationError as exc:
                    raise invalid(exc) from None
                attest = True
        if tag.key == T.PROJECT and current.get(tag.key) != tag.value:
            self._set_version_project(name, version, tag.value)
        else:
            _again_if_raced(
                lambda: super(HokusaiRegistryStore, self).set_model_version_tag(
                    name, version, tag, *args, **kwargs
                )
            )
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
        tags = self.get_model_version(name, version).tags or {}
        _refuse_deleting_lookalike(key, key in tags, _VERSION)
        before = tags.get(key)
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
        _check_description(_argument(args, kwargs, "description", 0))
        current = self.get_model_version(name, version)
        before = _version_state(current)
        args, kwargs = self._keep_server_summary(current, args, kwargs)
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
        tags = kwargs.get("tags") if "tags" in kwargs else (args[0] if args else None)
        _check_model_tags({tag.key: tag.value for tag in tags or []}, self._config)
        _check_description(_argument(args, kwargs, "description", 1))
        result = super().create_registered_model(name, *args, **kwargs)
        self._audit("registered_model.create", _model_target(name), after=_model_state(result))
        return result

    def update_registered_model(self, name, *args, **kwargs):
        _check_description(_argument(args, kwargs, "description", 0))
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
        _check_model_tags({tag.key: tag.value}, self._config)
        before = self.get_registered_model(name).tags.get(tag.key)
        if tag.key == T.PROJECT and before != tag.value:
            self._set_model_project(name, tag.value)
        else:
            super().set_registered_model_tag(name, tag, *args, **kwargs)
        self._audit("registered_model.set_tag", _model_target(name), {tag.key: before}, {tag.key: tag.value})

    def delete_registered_model_tag(self, name, key, *args, **kwargs):
        tags = self.get_registered_model(name).tags or {}
        _refuse_deleting_lookalike(key, key in tags, _MODEL)
        before = tags.get(key)
        if key == T.PROJECT and before is not None:
            self._delete_model_project(name)
        else:
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

    # -- guards: projects, baselines, the server's summary (docs/server.md, "Guards") ----------
    # A version's hokusai.project is its registered model's; the first Hokusai version of a model
    # with no project gives it its own ("adopts"); once a model has one, its project is final.
    # Checks and the writes they allow lock the registered model's row (FOR UPDATE on PostgreSQL),
    # so two workers cannot interleave a project change with a version of another project.

    def _check_version_project(self, name: str, project: str | None, version: Any = None) -> str | None:
        """Refuse a version's ``hokusai.project`` other than its registered model's (read only,
        before anything is written); the project the model adopts when it has none yet, or None.
        ``version``: the existing version being tagged (its own current project does not count)."""
        if project is None:
            return None
        try:
            T.check_project(project, T.PROJECT)
        except ValidationError as exc:
            raise invalid(exc) from None
        number = None if version is None else _validate_model_version(version)
        with self.ManagedSessionMaker() as session:
            row = self._get_registered_model(session, name)
            return self._project_rule(session, name, row, project, version=number)

    def _project_rule(self, session: Any, name: str, row: Any, project: str, version: int | None = None):
        model_project = _tag_of(row, T.PROJECT)
        if model_project == project:
            return None
        if model_project is not None:
            raise invalid(
                ValidationError(
                    T.PROJECT,
                    f"'{project}' is not the project of registered model '{name}', which is "
                    f"'{model_project}': a version is in its registered model's project",
                )
            )
        others = sorted(self._version_projects(session, name, but=version) - {project})
        if others:
            raise invalid(
                ValidationError(
                    T.PROJECT,
                    f"registered model '{name}' has no {T.PROJECT} tag but versions of project "
                    f"'{others[0]}': tag the registered model with its project first",
                )
            )
        return project  # to adopt

    def _adopt_project(self, name: str, project: str | None) -> str | None:
        """Give a registered model with no project ``project`` (checked again under the lock);
        the project written, or None."""
        if project is None:
            return None
        for attempt in range(2):
            try:
                with _write_session(self) as session:
                    row = self._locked_model(session, name)
                    if self._project_rule(session, name, row, project) is None:
                        return None  # a concurrent request gave it this very project
                    session.add(SqlRegisteredModelTag(**_scope(row), name=name, key=T.PROJECT, value=project))
                return project
            except MlflowException as exc:
                # SQLite has no FOR UPDATE: a concurrent adopter may insert first; now we see it.
                if attempt or not _is_integrity_error(exc):
                    raise
        return None  # unreachable

    def _undo_adoption(self, name: str, project: str | None) -> None:
        """MLflow refused the version after the model adopted its project: take the project back."""
        if project is None:
            return
        try:
            with _write_session(self) as session:
                self._locked_model(session, name)
                if not self._version_projects(session, name):
                    self._get_query(session, SqlRegisteredModelTag).filter(
                        SqlRegisteredModelTag.name == name,
                        SqlRegisteredModelTag.key == T.PROJECT,
                        SqlRegisteredModelTag.value == project,
                    ).delete(synchronize_session=False)
        except Exception:  # noqa: BLE001 - MLflow's own error is the one to report
            _logger.exception("could not take back the project %s adopted by %s", project, name)

    def _confirm_version_project(self, name: str, version: Any, adopted: str | None) -> None:
        """After MLflow's write: the model's project is still the new version's.

        The only way it is not: a concurrent request changed the model's project between the check
        and MLflow's insert (its lock could not see a version not yet committed). Then the version,
        written by this request a moment ago and seen by nobody, is removed and the call refused.
        """
        project = (version.tags or {}).get(T.PROJECT)
        if project is None:
            return
        model_project = self.registered_model_tag(name, T.PROJECT)
        if model_project != project:
            self._drop_version(name, version.version)
            raise invalid(
                ValidationError(
                    T.PROJECT,
                    f"registered model '{name}' was given project '{model_project}' while this "
                    f"version of project '{project}' was being registered; nothing was registered",
                )
            )
        if adopted:
            self._audit(
                "registered_model.set_tag", _model_target(name), {T.PROJECT: None}, {T.PROJECT: adopted}
            )

    def _set_version_project(self, name: str, version: Any, project: str) -> None:
        """Set an existing version's ``hokusai.project``, adopting it on a model with none, under
        the model's lock."""
        _validate_model_name(name)
        number = _validate_model_version(version)
        _validate_model_version_tag(T.PROJECT, project)
        with _write_session(self) as session:
            row = self._locked_model(session, name)
            adopt = self._project_rule(session, name, row, project, version=number)
            found = self._get_sql_model_version(session, name, number)
            if adopt:
                session.add(SqlRegisteredModelTag(**_scope(row), name=name, key=T.PROJECT, value=project))
            session.merge(
                SqlModelVersionTag(**_scope(found), name=name, version=number, key=T.PROJECT, value=project)
            )
        if adopt:
            self._audit(
                "registered_model.set_tag", _model_target(name), {T.PROJECT: None}, {T.PROJECT: adopt}
            )

    def _set_model_project(self, name: str, project: str) -> None:
        """Set a registered model's ``hokusai.project``: only to the project of its Hokusai versions."""
        try:
            T.check_project(project, T.PROJECT)
        except ValidationError as exc:
            raise invalid(exc) from None
        _validate_model_name(name)
        _validate_registered_model_tag(T.PROJECT, project)
        with _write_session(self) as session:
            row = self._locked_model(session, name)
            others = sorted(self._version_projects(session, name) - {project})
            if others:
                raise invalid(ValidationError(T.PROJECT, _final_project(name, others[0])))
            session.merge(SqlRegisteredModelTag(**_scope(row), name=name, key=T.PROJECT, value=project))

    def _delete_model_project(self, name: str) -> None:
        _validate_model_name(name)
        with _write_session(self) as session:
            self._locked_model(session, name)
            projects = sorted(self._version_projects(session, name))
            if projects:
                raise invalid(ValidationError(T.PROJECT, _final_project(name, projects[0])))
            self._get_query(session, SqlRegisteredModelTag).filter(
                SqlRegisteredModelTag.name == name, SqlRegisteredModelTag.key == T.PROJECT
            ).delete(synchronize_session=False)

    def _locked_model(self, session: Any, name: str) -> Any:
        """The registered model's row, locked until the session ends (a no-op on SQLite, where
        writers are serialised anyway); MLflow's not-found error if there is none."""
        row = (
            self._get_query(session, SqlRegisteredModel)
            .filter(SqlRegisteredModel.name == name)
            .with_for_update()
            .one_or_none()
        )
        return row if row is not None else self._get_registered_model(session, name)

    def _version_projects(self, session: Any, name: str, but: int | None = None) -> set[str]:
        """The projects the model's versions carry. Deleted versions count: MLflow keeps their
        tags, and their lineage, attestations and contributions stay in their project."""
        query = self._get_query(session, SqlModelVersionTag).filter(
            SqlModelVersionTag.name == name, SqlModelVersionTag.key == T.PROJECT
        )
        if but is not None:
            query = query.filter(SqlModelVersionTag.version != but)
        return {value for (value,) in query.with_entities(SqlModelVersionTag.value).distinct()}

    def _drop_version(self, name: str, version: Any) -> None:
        with _write_session(self) as session:
            for table in (SqlModelVersionTag, SqlModelVersion):
                self._get_query(session, table).filter(
                    table.name == name, table.version == int(version)
                ).delete(synchronize_session=False)

    def _check_baseline_project(self, name: str, tags: dict[str, str]) -> None:
        """An improvement's baseline is in the improved version's project (no cross-project
        improvements: the DeltaOne is counted in the project's contributor totals).

        The baseline's project is its registered model's (the improved version's own, being
        adopted, when both are versions of one model), else the baseline version's tag. A baseline
        in no project is refused too: its model could later be tagged with any project. Malformed
        or missing tags are left to the registrar, which names them.
        """
        project, baseline = tags.get(T.PROJECT), tags.get(T.BASELINE)
        if not project or not baseline:
            return
        try:
            base_name, base_version = T.parse_model_id(baseline, T.BASELINE)
            base_project = self.registered_model_tag(base_name, T.PROJECT)
            if base_project is None and base_name == name:
                base_project = project  # checked by _check_version_project: the model adopts it
            if base_project is None:
                base_project = (self.get_model_version(base_name, str(base_version)).tags or {}).get(
                    T.PROJECT
                )
        except (ValidationError, MlflowException):
            return  # the registrar says what is wrong with the baseline
        if base_project is None:
            raise invalid(
                ValidationError(
                    T.BASELINE,
                    f"baseline {baseline} is in no project: tag its registered model '{base_name}' "
                    f"with {T.PROJECT}={project} first (an improvement stays in its project)",
                )
            )
        if base_project != project:
            raise invalid(
                ValidationError(
                    T.BASELINE,
                    f"baseline {baseline} is in project {base_project}, not {project} "
                    "(an improvement and its baseline are in one project)",
                )
            )

    def _keep_server_summary(self, current: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """On an attested version (signed, failed, or with a lineage edge) a new description keeps
        the server's summary block as stored; the client's own text around it is theirs."""
        tags = current.tags or {}
        attested = tags.get(T.ATTESTATION_STATUS) in (T.STATUS_SIGNED, T.STATUS_FAILED) or (
            self.hokusai.edge_of(T.format_model_id(current.name, current.version)) is not None
        )
        if not attested:
            return args, kwargs
        asked = kwargs.get("description") if "description" in kwargs or not args else args[0]
        kept = summary.keep_server_block(asked, current.description)
        limit = getattr(summary, "MAX_DESCRIPTION_LENGTH", 5000)  # MLflow's description column
        if kept is not None and len(kept) > limit:
            raise invalid(
                ValidationError(
                    "description",
                    f"with the server's summary, which an attested version keeps, it would be "
                    f"{len(kept)} characters; MLflow keeps at most {limit}",
                )
            )
        if "description" in kwargs or not args:
            return args, {**kwargs, "description": kept}
        return (kept, *args[1:]), kwargs


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

    def update_description(
        self,
        name: str,
        version: str | int,
        rewrite: Callable[[str | None, dict[str, str]], str | None],
    ) -> bool:
        """Set one version's description to ``rewrite(stored description, tags)`` (None: keep it);
        False when nothing was written.

        Written only over the description ``rewrite`` saw, else read and rewritten again (as
        ``HokusaiStore.replace_attestation`` renews): ``rewrite`` reads what it lists after the
        description, so a concurrent writer's text is either read or makes this write retry, and
        is never undone. No row lock, so no connection is held while ``rewrite`` reads.
        """
        for _ in range(20):
            current = self._store.get_model_version(name, str(version))
            stored = current.description
            text = rewrite(stored, dict(current.tags or {}))
            if text is None or text == stored:
                return False
            column = SqlModelVersion.description
            unchanged = column.is_(None) if stored is None else column == stored
            with _write_session(self._store) as session:
                written = (
                    self._store._get_query(session, SqlModelVersion)
                    .filter(
                        SqlModelVersion.name == name,
                        SqlModelVersion.version == int(version),
                        SqlModelVersion.current_stage != STAGE_DELETED_INTERNAL,
                        unchanged,
                    )
                    .update(
                        {"description": text, "last_updated_time": get_current_time_millis()},
                        synchronize_session=False,
                    )
                )
            if written == 1:
                return True
        raise RuntimeError(f"the description of {name}/{version} is being rewritten concurrently")

    def first_baseline_version(self, name: str) -> str | None:
        """The lowest version of registered model ``name`` with ``hokusai.project`` and no
        ``hokusai.baseline``: the baseline whose digest is the model's on-chain genesis."""
        from sqlalchemy import and_, exists, func
        from sqlalchemy.orm import aliased

        baseline = aliased(SqlModelVersionTag)
        project = SqlModelVersionTag
        with self._store.ManagedSessionMaker() as session:
            found = (
                session.query(func.min(project.version))
                .filter(
                    project.name == name,
                    project.key == T.PROJECT,
                    ~exists().where(
                        and_(
                            baseline.name == project.name,
                            baseline.version == project.version,
                            baseline.key == T.BASELINE,
                        )
                    ),
                )
                .scalar()
            )
        return None if found is None else str(found)

    def versions_with_digest(self, name: str, digest: str) -> list[str]:
        """The versions of registered model ``name`` whose ``hokusai.artifact_digest`` is ``digest``."""
        with self._store.ManagedSessionMaker() as session:
            rows = (
                session.query(SqlModelVersionTag.version)
                .filter(
                    SqlModelVersionTag.name == name,
                    SqlModelVersionTag.key == T.ARTIFACT_DIGEST,
                    SqlModelVersionTag.value == digest,
                )
                .all()
            )
        return sorted(str(version) for (version,) in rows)

    def undigested_versions(self, limit: int = 1000) -> list[tuple[str, str]]:
        """Up to ``limit`` versions registered with ``hokusai.project`` and no improvement (status
        ``not_applicable``) that have no ``hokusai.artifact_digest`` yet: baselines registered
        before digests were written at registration, or whose artifact store failed then."""
        from sqlalchemy import and_, exists
        from sqlalchemy.orm import aliased

        digest = aliased(SqlModelVersionTag)
        status = SqlModelVersionTag
        with self._store.ManagedSessionMaker() as session:
            rows = (
                session.query(status.name, status.version)
                .filter(
                    status.key == T.ATTESTATION_STATUS,
                    status.value == T.STATUS_NOT_APPLICABLE,
                    ~exists().where(
                        and_(
                            digest.name == status.name,
                            digest.version == status.version,
                            digest.key == T.ARTIFACT_DIGEST,
                        )
                    ),
                )
                .order_by(status.name, status.version)
                .limit(limit)
                .all()
            )
        return [(name, str(version)) for name, version in rows]

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


_VERSION, _MODEL = "model version", "registered model"


def _refuse_server_tags(tag_map: dict[str, str], level: str = _VERSION) -> None:
    """Refuse the keys of the ``hokusai.`` namespace a client may not write on a ``level``
    object: the server's tags, look-alike spellings of ours, keys of another level, unknown ones."""
    for key in tag_map:
        problem = _key_problem(key, level)
        if problem:
            raise invalid(ValidationError(key, problem))


def _check_model_tags(tag_map: dict[str, str], config: Any) -> None:
    _refuse_server_tags(tag_map, _MODEL)
    try:
        if T.PROJECT in tag_map:
            T.check_project(tag_map[T.PROJECT], T.PROJECT)
        if T.ONCHAIN_MODEL_ID in tag_map:
            T.check_onchain_model_id(tag_map[T.ONCHAIN_MODEL_ID])
            # Refused now, not found out when the first improvement cannot be signed for the chain.
            config.onchain_target(tag_map[T.ONCHAIN_MODEL_ID])
    except ValidationError as exc:
        raise invalid(exc) from None


def _again_if_raced(write: Any) -> Any:
    """Run an MLflow tag write, once more if a concurrent writer inserted the same tag first.

    MLflow inserts a new tag with SELECT-then-INSERT, so the loser of two concurrent writers of one
    key fails on the primary key (MLflow answers that as a 400 carrying the SQL). The row exists
    then, and the second try updates it.
    """
    from sqlalchemy.exc import IntegrityError

    try:
        return write()
    except MlflowException as exc:
        if not isinstance(exc.__cause__, IntegrityError):
            raise
        return write()


def _argument(args: tuple, kwargs: dict, name: str, position: int) -> Any:
    """An argument MLflow may pass by keyword (the 3.x server) or by position."""
    return kwargs[name] if name in kwargs else (args[position] if len(args) > position else None)


def _check_description(description: str | None) -> None:
    """MLflow's column holds 5000 characters; past that the database refuses with the SQL in the
    message, so it is refused here first."""
    if description is not None and len(description) > bounds.MLFLOW_DESCRIPTION_LENGTH:
        raise invalid(
            ValidationError(
                "description",
                f"has {len(description)} characters; at most {bounds.MLFLOW_DESCRIPTION_LENGTH}",
            )
        )


def _key_problem(key: str, level: str) -> str | None:
    """Why a client may not write ``key`` on a ``level`` object, or None.

    >>> _key_problem("team", _VERSION) is None, _key_problem(T.PROJECT, _MODEL) is None
    (True, True)
    >>> _key_problem("Hokusai.Attestation.Status", _VERSION)
    "'Hokusai.Attestation.Status' is a look-alike of the Hokusai tag 'hokusai.attestation.status' ..."
    """
    allowed = T.VERSION_CLIENT_TAGS if level == _VERSION else T.MODEL_CLIENT_TAGS
    if key in allowed:
        return None
    if key in T.SERVER_TAGS:
        if level == _VERSION:
            return "is written by the Hokusai server, not by clients"
        return "is a model-version tag written by the Hokusai server; not a registered-model tag"
    ours = T.hokusai_key_of(key)
    if ours is not None and ours != key:
        return (
            f"{key!r} is a look-alike of the Hokusai tag {ours!r} (it differs only by case, spaces or "
            "look-alike characters); the hokusai. namespace is the plugin's: spell its keys exactly"
        )
    if ours in T.RUN_TAGS:
        return "is a tag of the version's source run, not of a model version or registered model"
    if ours is not None and level == _VERSION:
        return "is a registered-model tag: set it on the registered model, not on a version"
    if ours is not None:
        return f"is a model-version tag; a registered model carries only {' and '.join(allowed)}"
    if T.in_namespace(key):
        return (
            f"{key!r}: the hokusai. namespace is the plugin's, and this is not one of its "
            f"{level} tags ({', '.join(allowed)})"
        )
    return None


def _refuse_deleting_lookalike(key: str, exists: bool, level: str) -> None:
    """A key a client may not write may not be deleted either, except to clean up one that the
    object really carries (written before these guards: the server never writes its tags on a
    registered model, nor look-alikes anywhere). MLflow deletes the exact key only, so such a
    delete never touches one of ours. The server's version tags are refused before this."""
    problem = None if exists else _key_problem(key, level)
    if problem:
        raise invalid(ValidationError(key, problem))


def _final_project(name: str, project: str) -> str:
    return (
        f"registered model '{name}' has Hokusai versions in project '{project}': its {T.PROJECT} is "
        "final once it has one (changing it would move their lineage and DeltaOne to another "
        "project); register a new model for another project"
    )


def _tag_of(row: Any, key: str) -> str | None:
    return next((tag.value for tag in row.registered_model_tags if tag.key == key), None)


def _scope(row: Any) -> dict:
    # MLflow 3.5+ keys every registry row by workspace too.
    return {"workspace": row.workspace} if hasattr(row, "workspace") else {}


def _is_integrity_error(exc: MlflowException) -> bool:
    from sqlalchemy.exc import IntegrityError

    return isinstance(exc.__cause__, IntegrityError)


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
