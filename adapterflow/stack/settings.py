"""What a local stack runs: its ports, bucket and work pools, and the folders it keeps under its root."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BUCKET = "adapterflow"
DEFAULT_POOLS = ("cpu", "cuda")
REGION = "us-east-1"


@dataclass(frozen=True)
class PoolSettings:
    """One process work pool and the worker that serves it."""

    home: Path | None = None  # the worker's ADAPTERFLOW_HOME; default ROOT/workers/<pool>/home
    env: dict[str, str] = field(default_factory=dict)  # extra env for the worker and the flow runs it starts
    concurrency_limit: int | None = None


def _default_pools() -> dict[str, PoolSettings]:
    return {name: PoolSettings() for name in DEFAULT_POOLS}


@dataclass(frozen=True)
class StackSettings:
    """Ports (0 picks a free one), bucket, work pools, MLflow's login and extra server env of a local stack."""

    s3_port: int = 8333
    mlflow_port: int = 5001
    prefect_port: int = 4200
    bucket: str = DEFAULT_BUCKET
    pools: dict[str, PoolSettings] = field(default_factory=_default_pools)
    worker_query_seconds: float = 5.0
    server_env: dict[str, str] = field(default_factory=dict)  # extra env for the MLflow and Prefect servers
    start_timeout: float = 240.0  # seconds per component; MLflow's first start migrates its schema (about 1 min)
    mlflow_auth: bool = True  # MLflow's basic-auth app: every client logs in (infra/README.md says why by default)


@dataclass(frozen=True)
class StackLayout:
    """The files and folders of a stack under its root (`ADAPTERFLOW_HOME/stack` for the CLI)."""

    root: Path

    @property
    def pgdata(self) -> Path:
        return self.root / "postgres"

    @property
    def s3_data(self) -> Path:
        return self.root / "s3"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids.json"

    @property
    def state(self) -> Path:
        return self.root / "stack.json"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials.json"

    @property
    def s3_config(self) -> Path:
        return self.root / "s3-identities.json"

    @property
    def mlflow_login(self) -> Path:
        return self.root / "mlflow-login.json"

    @property
    def mlflow_auth_config(self) -> Path:
        return self.root / "mlflow-auth.ini"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def worker_root(self, pool: str) -> Path:
        return self.root / "workers" / pool
