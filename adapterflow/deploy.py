"""Deployments on a Prefect server: the pipeline on the default pool (optionally on a cron schedule), training
and evaluation on the GPU pool. Re-deploying updates them in place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron
from prefect.workers.process import ProcessWorker

import flows
from schemas.execution import ExecutionConfig
from schemas.pipeline import PipelineConfig

PROJECT_ROOT = Path(flows.__file__).resolve().parent.parent
PIPELINE_ENTRYPOINT = "flows/finetune.py:finetune"
GPU_ENTRYPOINTS = {"adapterflow-train": "flows/gpu.py:train_on_worker",
                   "adapterflow-evaluate": "flows/gpu.py:evaluate_on_worker"}


@dataclass(frozen=True)
class Deployed:
    name: str
    pool: str
    schedule: str | None


def ensure_pools(execution: ExecutionConfig) -> None:
    """Create the process work pools the config names, and set the GPU pool's concurrency when configured."""
    with get_client(sync_client=True) as client:
        for name in (execution.pools.default, execution.pools.gpu):
            limit = execution.gpu_concurrency if name == execution.pools.gpu else None
            try:
                client.read_work_pool(name)
            except ObjectNotFound:
                client.create_work_pool(WorkPoolCreate(
                    name=name, type="process", concurrency_limit=limit,
                    base_job_template=ProcessWorker.get_default_base_job_template()))
                continue
            if limit is not None:
                client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=limit))


def deploy_gpu_flows(config: PipelineConfig) -> list[Deployed]:
    """Training and evaluation of this config on the GPU pool, with its job variables."""
    from prefect import Flow

    deployed = []
    for flow_name, entrypoint in GPU_ENTRYPOINTS.items():
        remote = Flow.from_source(source=str(PROJECT_ROOT), entrypoint=entrypoint)
        remote.deploy(name=config.name, work_pool_name=config.execution.pools.gpu,
                      job_variables=config.execution.gpu_job_variables, print_next_steps=False, build=False,
                      push=False)
        deployed.append(Deployed(f"{flow_name}/{config.name}", config.execution.pools.gpu, None))
    return deployed


def deploy_config(config: PipelineConfig, cron: str | None, timezone: str) -> list[Deployed]:
    """Create or update the config's deployments; the pipeline runs the config as it is now."""
    from prefect import Flow

    ensure_pools(config.execution)
    deployed = deploy_gpu_flows(config) if config.execution.mode == "distributed" else []
    pipeline = Flow.from_source(source=str(PROJECT_ROOT), entrypoint=PIPELINE_ENTRYPOINT)
    schedules = [Cron(cron, timezone=timezone)] if cron else []
    pipeline.deploy(name=config.name, work_pool_name=config.execution.pools.default,
                    parameters={"config": config.model_dump(mode="json")}, schedules=schedules,
                    print_next_steps=False, build=False, push=False)
    schedule = f"{cron} ({timezone})" if cron else None
    return [Deployed(f"adapterflow-finetune/{config.name}", config.execution.pools.default, schedule), *deployed]
