"""The ADAPTERFLOW_HOME layout and the environment of the embedded engines."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "./.adapterflow"


@dataclass(frozen=True)
class Home:
    """Where adapterflow keeps its stores, models, caches and run folders."""

    root: Path

    @classmethod
    def from_env(cls) -> Home:
        return cls(Path(os.environ.get("ADAPTERFLOW_HOME", DEFAULT_HOME)).expanduser().resolve())

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def prefect(self) -> Path:
        return self.root / "prefect"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def stack(self) -> Path:
        return self.root / "stack"

    def cache_dir(self, kind: str, key: str) -> Path:
        """A content-addressed folder: `cache/<kind>/<key>`."""
        return self.cache / kind / key

    def run_dir(self, run_name: str) -> Path:
        path = self.runs / run_name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def embedded_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"


def configure_environment(home: Home | None = None) -> Home:
    """Point MLflow and Prefect at the embedded stores unless the user configured their own.

    Must run before prefect is imported: Prefect reads PREFECT_HOME when it loads its settings.
    """
    home = home or Home.from_env()
    home.root.mkdir(parents=True, exist_ok=True)
    os.environ["ADAPTERFLOW_HOME"] = str(home.root)
    os.environ.setdefault("MLFLOW_TRACKING_URI", home.embedded_tracking_uri)
    os.environ.setdefault("PREFECT_HOME", str(home.prefect))
    # A fresh SQLite database is migrated on first start, which takes longer than Prefect's 20 s default
    # on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    # No telemetry: runs must work on machines with no network beyond package registries.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Tokenizing a batch uses every core (the data stages run no forked workers that this would upset).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    return home


def uses_embedded_mlflow(home: Home) -> bool:
    return os.environ.get("MLFLOW_TRACKING_URI") == home.embedded_tracking_uri
