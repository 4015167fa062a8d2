"""Client-side MLflow plugins: what runs in the user's process, not on the server.

- :mod:`.run_context`: ``HokusaiRunContextProvider`` (entry point group
  ``mlflow.run_context_provider``) tags every ``mlflow.start_run()`` with the Hokusai project and
  pipeline run, including the Metaflow flow, run, step and task it runs in.
- :mod:`.app_client`: ``HokusaiAppClient`` (entry point group ``mlflow.app.client``), the client of
  the Hokusai REST routes: ``mlflow.server.get_app_client("hokusai", tracking_uri=...)``.
"""

# MLflow must be fully imported before ``run_context`` starts executing. ``import mlflow`` loads the
# ``mlflow.run_context_provider`` entry points; if the first import in a process were
# ``run_context`` itself, its own ``from mlflow... import RunContextProvider`` would start that
# loading while ``run_context`` is half-built, and MLflow would drop the provider with a mere
# warning. Importing MLflow here, in the parent package, runs that loading before ``run_context``
# exists, so the entry point then imports it completely. (When MLflow is imported first, MLflow is
# already in ``sys.modules`` and this line does nothing.)
import mlflow  # noqa: F401
