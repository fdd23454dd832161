"""The MLflow and Prefect servers, Prefect's process work pools and their workers: commands and checks."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from adapterflow.core.errors import AdapterflowError
from adapterflow.stack.mlflow_auth import APP_NAME
from adapterflow.stack.ports import HOST


def executable(name: str) -> Path:
    """A console script of this environment (the venv's bin folder even when it is not on PATH)."""
    beside = Path(sys.executable).parent / name
    found = beside if beside.exists() else shutil.which(name)
    if found is None:
        raise AdapterflowError(f"`{name}` was not found next to {sys.executable} or on PATH",
                               hint="pip install 'adapterflow[stack]'")
    return Path(found)


def mlflow_url(port: int) -> str:
    return f"http://{HOST}:{port}"


def prefect_api_url(port: int) -> str:
    return f"http://{HOST}:{port}/api"


def mlflow_command(backend_store_uri: str, bucket: str, port: int, *, auth: bool) -> list[str]:
    """A tracking server that proxies artifacts into the bucket, so clients need only its URL (and, with `auth`,
    a login of MLflow's basic-auth app)."""
    return [
        str(executable("mlflow")), "server", "--backend-store-uri", backend_store_uri,
        "--artifacts-destination", f"s3://{bucket}/mlartifacts", "--host", HOST, "--port", str(port),
        "--workers", "1", *(["--app-name", APP_NAME] if auth else []),
    ]


def prefect_server_command(port: int) -> list[str]:
    return [str(executable("prefect")), "server", "start", "--host", HOST, "--port", str(port)]


def worker_command(pool: str) -> list[str]:
    return [str(executable("prefect")), "worker", "start", "--pool", pool, "--type", "process"]


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def mlflow_healthy(port: int) -> bool:
    return http_ok(f"{mlflow_url(port)}/health")


def prefect_healthy(port: int) -> bool:
    return http_ok(f"{prefect_api_url(port)}/health")


def online_workers(api_url: str, pool: str) -> int:
    """How many of the pool's workers Prefect counts as ONLINE (they heartbeat when they start polling)."""
    try:
        response = httpx.post(f"{api_url}/work_pools/{pool}/workers/filter", json={}, timeout=5)
    except httpx.HTTPError:
        return 0
    if response.status_code != 200:
        return 0
    return sum(1 for worker in response.json() if worker.get("status") == "ONLINE")


def worker_online(api_url: str, pool: str) -> bool:
    return online_workers(api_url, pool) > 0


@contextmanager
def scheduler_server(prefect_home: Path, log: Path, timeout: float = 180) -> Iterator[str]:
    """A Prefect server on a free port for as long as the block runs: Prefect's temporary API runs no scheduler,
    so a schedule served from this machine needs one. Yields its API URL; stopped by PID on the way out."""
    from adapterflow.stack.ports import free_ports
    from adapterflow.stack.processes import Recorded, spawn, stop_groups, wait_until

    (port,) = free_ports(1)
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    server = spawn(prefect_server_command(port), env, log)
    recorded = Recorded(pid=server.pid, started=psutil.Process(server.pid).create_time())
    try:
        wait_until("prefect server", lambda: prefect_healthy(port), server, log, timeout)
        yield prefect_api_url(port)
    finally:
        stop_groups([recorded])
