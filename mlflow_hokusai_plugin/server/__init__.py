"""The ``hokusai`` MLflow app: ``mlflow server --app-name hokusai``.

Modelled on MLflow's basic-auth app: a factory (``app.create_app``), a module of route paths
(``routes``), the configuration (``config``), and blueprints for the routes.
"""
