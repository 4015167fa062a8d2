"""Hokusai MLOps services as a plugin of MLflow.

The package is split in three layers:

- ``mlflow_hokusai_plugin.core``: pure domain logic (addresses, metric deltas, DeltaOne,
  contributors, attestations). No I/O and no MLflow import.
- ``mlflow_hokusai_plugin.signer``: the attester key (environment or keystore).
- ``mlflow_hokusai_plugin.services``: the PRD services on top of MLflow's client.
"""

__version__ = "0.1.0"
