"""Shared fixtures: offline, isolated stores per test, one Prefect test server, one tiny model."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

if TYPE_CHECKING:
    from mlflow import ActiveRun

# Before anything imports prefect, mlflow or transformers: no network, no telemetry, nothing under $HOME.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="adapterflow-tests-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["ADAPTERFLOW_HOME"] = str(_SESSION_DIR / "home")
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_DIR / 'mlflow.db'}"
if workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # share the cores among xdist workers, don't oversubscribe
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(workers))))

from adapterflow.core.home import Home, configure_environment  # noqa: E402

configure_environment()

from tests.tiny_model import ASSETS, tiny_config  # noqa: E402, F401 - the tests import them from here

pytest_plugins = ["tests.xdist_groups"]


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect API for all flow tests (starting one costs seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def cluster() -> Iterator[dict]:
    """One real stack for the `servers` tests: Postgres, S3, MLflow, a Prefect server with its scheduler and a
    `cpu` and a `cuda` worker, each with its own ADAPTERFLOW_HOME. Stopped by PID at the end, whatever happened.
    MLflow runs its basic-auth app: the stack's admin login is in this process's environment while it runs."""
    from adapterflow.stack import MLFLOW_LOGIN_VARS, PoolSettings, StackSettings
    from tests.stack_servers import running_stack

    # Not under pytest's basetemp: Postgres runs as another user (when the tests run as root), and every pytest
    # session makes /tmp/pytest-of-<user> private again, which would cut a running server off its data.
    root = Path(tempfile.mkdtemp(prefix="adapterflow-cluster-"))
    worker_env = {"HF_HUB_OFFLINE": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    settings = StackSettings(
        s3_port=0, mlflow_port=0, prefect_port=0, worker_query_seconds=1,
        pools={"cpu": PoolSettings(home=root / "cpu-home", env=worker_env),
               "cuda": PoolSettings(home=root / "cuda-home", env=worker_env, concurrency_limit=1)},
        server_env={"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"},
    )
    try:
        with running_stack(root / "stack", settings) as env, pytest.MonkeyPatch.context() as patch:
            for name in MLFLOW_LOGIN_VARS:  # the tests' own MLflow clients log in as the workers do
                patch.setenv(name, env[name])
            yield {"root": root, "stack_root": root / "stack", "env": env}
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(_SESSION_DIR / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_classifier_dir() -> Path:
    from tests.tiny_model import build_tiny_classifier

    return build_tiny_classifier(_SESSION_DIR / "tiny-bert")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """A fresh ADAPTERFLOW_HOME with its own embedded MLflow store."""
    home = Home(tmp_path / "home")
    home.root.mkdir()
    monkeypatch.setenv("ADAPTERFLOW_HOME", str(home.root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", home.embedded_tracking_uri)
    return home


def run_in_home(home: Home) -> ActiveRun:
    """An MLflow run whose artifacts stay in the test's home (MLflow's Default experiment would put them in the
    working directory's ./mlruns)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from adapterflow.tracking.run import ensure_experiment

    return mlflow.start_run(experiment_id=ensure_experiment(MlflowClient(), "tests", home))


def write_config(folder: Path, config: dict, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
