"""Hokusai MLOps services as a plugin of MLflow.

The package is layered; each layer may import the ones below it and never one above
(``.importlinter`` states it and ``make lint`` checks it with ``lint-imports``):

- ``cli``: the ``hokusai`` command.
- ``demo``: ``hokusai demo`` and the embedded ``mlflow server`` it starts.
- ``pipeline`` | ``backup`` | ``migrate``: the Metaflow evaluation flow; backup and restore;
  ``hokusai migrate`` of versions registered before the plugin. Independent of each other.
- ``services``: the PRD services (``HokusaiModelRegistry``, ``PerformanceTracker``,
  ``ExperimentManager``) on top of MLflow's client.
- ``server`` | ``client``: the ``hokusai`` app mounted in ``mlflow server`` (routes, auth,
  limits); the client-side plugins (run context, app client). Independent of each other.
- ``store``: the ``hokusai+`` MLflow store plugins and the registrar, the one place that issues an
  attestation; the model digest and the facts read from MLflow's runs.
- ``db``: the plugin's own tables, their Alembic migrations, the audit log.
- ``runtime``: what the store and the server share in a running process: settings from the
  environment, the attester key, the request being served, metrics.
- ``core``: pure domain logic (addresses, metric deltas, DeltaOne, contributors, attestations,
  EIP-712). No I/O, no MLflow, no database, no network.
"""

__version__ = "0.1.0"
