"""Real processes for the reliability benchmark, all on 127.0.0.1: a tiny model and its config, an `mlflow server`
on SQLite stopped and started by PID, and the flow run by the CLI (`adapterflow run`) in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psutil
import yaml

from adapterflow.stack.ports import HOST, free_ports
from adapterflow.stack.processes import Recorded, spawn, stop_groups, wait_until
from adapterflow.stack.servers import executable, mlflow_healthy, mlflow_url

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "tests" / "assets"


def build_model(folder: Path) -> Path:
    """The tests' tiny llama (2 layers, hidden 32) with its own tokenizer, written to `folder`."""
    from tests.tiny_model import build_tiny_model

    return build_tiny_model(folder)


def tiny_config(model: Path, name: str, sources: list[dict] | None = None, **sections: dict) -> dict:
    """The tests' config for the tiny model and the test assets, named `name`, logging every step, sections
    overridden."""
    from tests.tiny_model import tiny_config as tests_config

    training = {"logging_steps": 1, **sections.pop("training", {})}
    return tests_config(model, sources, **sections, training=training) | {"name": name}


def write_config(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class MlflowServer:
    """`mlflow server` on a SQLite database and a local artifacts folder; stop() and start() keep port and store."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.database = root / "mlflow.db"
        self.artifacts = root / "artifacts"
        self.log = root / "mlflow-server.log"
        (self.port,) = free_ports(1)
        self.recorded: Recorded | None = None

    @property
    def uri(self) -> str:
        return mlflow_url(self.port)

    def start(self, timeout: float = 180) -> None:
        command = [str(executable("mlflow")), "server", "--backend-store-uri", f"sqlite:///{self.database}",
                   "--artifacts-destination", str(self.artifacts), "--host", HOST, "--port", str(self.port),
                   "--workers", "1"]
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        process = spawn(command, env, self.log)
        self.recorded = Recorded(process.pid, psutil.Process(process.pid).create_time())
        wait_until("mlflow server", lambda: mlflow_healthy(self.port), process, self.log, timeout)

    def stop(self) -> None:
        """SIGTERM its process group by the recorded PID, SIGKILL what is left after 3 s."""
        if self.recorded is not None:
            stop_groups([self.recorded])
            self.recorded = None


@contextmanager
def mlflow_server(root: Path) -> Iterator[MlflowServer]:
    server = MlflowServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def flow_env(home: Path, tracking_uri: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI subprocess: offline, its own ADAPTERFLOW_HOME (and so its own Prefect API), the
    given MLflow server (None: the home's embedded store)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ADAPTERFLOW_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "MLFLOW_DISABLE_TELEMETRY": "true", **(extra or {})}
    for name in ("PREFECT_API_URL", "PREFECT_HOME", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def start_flow(config: Path, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`adapterflow run CONFIG` in its own process group, output to `log`, summary beside the log."""
    command = [sys.executable, "-m", "adapterflow.cli.main", "run", str(config),
               "--summary-json", str(log.with_suffix(".summary.json"))]
    return spawn(command, env, log, cwd=ROOT)


def wait_flow(process: subprocess.Popen[bytes], timeout: float) -> int:
    """The flow's exit code; a flow still running after `timeout` s is killed (with its Prefect server) and
    counts as -9."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        return -9


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """kill -9 the flow and every process it started (its temporary Prefect server): a machine that died."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait()


def poll(condition: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float, every: float = 0.5) -> bool:
    """Poll `condition` until it holds (True), the process exits or time runs out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(every)
    return False
