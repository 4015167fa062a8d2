"""The layers of mlflow_hokusai_plugin/__init__.py, as a user of the package sees them."""

import pathlib
import subprocess
import sys

import mlflow_hokusai_plugin

PACKAGE = pathlib.Path(mlflow_hokusai_plugin.__file__).parent
LAYERS = {
    "cli",
    "demo",
    "pipeline",
    "backup",
    "migrate",
    "services",
    "server",
    "client",
    "store",
    "db",
    "runtime",
    "core",
}


def test_the_core_imports_nothing_of_mlflow_a_database_or_the_network():
    code = (
        "import importlib, pkgutil, sys\n"
        "import mlflow_hokusai_plugin.core as core\n"
        "for m in pkgutil.iter_modules(core.__path__):\n"
        "    importlib.import_module('mlflow_hokusai_plugin.core.' + m.name)\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    roots = {name.split(".")[0] for name in loaded}
    assert not roots & {"mlflow", "sqlalchemy", "alembic", "flask", "requests", "urllib3", "boto3", "redis"}
    assert not loaded & {"http.client", "urllib.request"}


def test_the_package_top_holds_only_the_cli_and_the_layers():
    top = {p.name for p in PACKAGE.iterdir() if not p.name.startswith(("_", "."))}
    assert {p for p in top if p.endswith(".py")} == {"cli.py"}
    assert {p for p in top if (PACKAGE / p).is_dir()} == LAYERS - {"cli"}


def test_the_package_docstring_names_every_layer():
    for layer in LAYERS:
        assert f"``{layer}``" in mlflow_hokusai_plugin.__doc__, layer


def test_the_layer_contract_holds():
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stdout[-3000:]


def test_the_layer_contract_catches_a_lower_layer_importing_a_higher_one(tmp_path):
    import shutil

    shutil.copytree(PACKAGE, tmp_path / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PACKAGE.parent / ".importlinter", tmp_path)
    with open(tmp_path / PACKAGE.name / "db" / "urls.py", "a") as module:
        module.write("\nfrom mlflow_hokusai_plugin.server import routes  # noqa\n")
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "mlflow_hokusai_plugin.db.urls -> mlflow_hokusai_plugin.server.routes" in result.stdout
