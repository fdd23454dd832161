"""Where the flow runs: device, caching, shared storage and, in distributed mode, the work pools."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from adapterflow.core.secrets import looks_secret
from schemas.base import StrictModel, resolve_config_path


class PoolsConfig(StrictModel):
    """Prefect work pools by role."""

    default: str = Field("cpu", description="the pipeline and the data stages")
    gpu: str = Field("cuda", description="training and evaluation")


class ExecutionConfig(StrictModel):
    """Device selection, content-addressed caching, and where each stage runs."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available, else CPU")
    cache: bool = Field(True, description="reuse tokenized data, adapters and evaluations whose inputs are unchanged")
    workers: int = Field(0, ge=0, le=256, description="processes for the data stages; 0: one per CPU core")
    skip_unchanged: bool = Field(
        True, description="end a run as a no-op when its sources, config, base model and code equal the last "
        "successful run's for the same registered model"
    )
    mode: Literal["local", "distributed"] = Field(
        "local", description="local: every stage in this process; distributed: training and evaluation run as "
        "flows on the GPU work pool (deploy them with `adapterflow deploy`)"
    )
    storage: str | None = Field(
        None, description="the content-addressed store stages share: a folder or s3://bucket/prefix (credentials "
        "and endpoint from AWS_* / AWS_ENDPOINT_URL); default $ADAPTERFLOW_STORAGE, else ADAPTERFLOW_HOME/cache"
    )
    pools: PoolsConfig = PoolsConfig()
    gpu_job_variables: dict[str, Any] = Field(
        default_factory=dict, description="job variables of the GPU flow runs (e.g. env, a GPU count for a "
        "Kubernetes base job template)"
    )
    gpu_concurrency: int | None = Field(
        None, ge=1, description="flow runs the GPU pool runs at once (set on the pool by `adapterflow deploy`)"
    )
    pickup_timeout_s: float = Field(
        600, gt=0, description="how long a GPU stage waits for a worker of the GPU pool to start it"
    )
    retrain_lock_timeout_s: float | None = Field(
        7200, gt=0, description="how long a run waits while another run of the same registered model holds its "
        "retrain slot, then fails saying how to free a slot a crashed run left; None: as long as it takes"
    )

    @field_validator("gpu_job_variables")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        # a config is logged as MLflow params and stored in deployments: secrets belong to the worker's environment
        env = value.get("env") or {}
        secret = sorted(name for name in env if looks_secret(str(name)))
        if secret:
            raise ValueError(f"env {', '.join(secret)} looks secret: a config is logged to MLflow and stored in the "
                             "deployment; set it in the GPU worker's environment (flow runs inherit it) or in the "
                             "work pool's job template")
        return value

    @field_validator("storage")
    @classmethod
    def _local_paths_from_config(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or "://" in value:
            return value
        from pathlib import Path

        return str(resolve_config_path(Path(value), info, must_exist=False))

    @property
    def data_workers(self) -> int:
        import os

        return self.workers or os.cpu_count() or 1
