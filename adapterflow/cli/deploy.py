"""Deployments on a Prefect server: the pipeline on the default pool (optionally on a cron schedule), training
and evaluation on the GPU pool. Re-deploying updates them in place; prefect.yaml holds the same for the demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.schedules import Cron

import flows
from adapterflow.orchestration.pools import ensure_work_pool
from flows.gpu import EVALUATE_FLOW, SEARCH_FLOW, TRAIN_FLOW
from schemas.execution import ExecutionConfig
from schemas.pipeline import PipelineConfig

PROJECT_ROOT = Path(flows.__file__).resolve().parent.parent
PIPELINE_FLOW = "adapterflow-finetune"
ENTRYPOINTS = {PIPELINE_FLOW: "flows/finetune.py:finetune", TRAIN_FLOW: "flows/gpu.py:train_on_worker",
               EVALUATE_FLOW: "flows/gpu.py:evaluate_on_worker", SEARCH_FLOW: "flows/gpu.py:search_on_worker"}


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment as `deploy` creates it (and as prefect.yaml declares it)."""

    flow_name: str
    name: str
    work_pool: str
    parameters: dict[str, Any]
    job_variables: dict[str, Any]
    cron: str | None = None
    timezone: str = "UTC"

    @property
    def entrypoint(self) -> str:
        return ENTRYPOINTS[self.flow_name]

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"


def deployment_specs(config: PipelineConfig, cron: str | None, timezone: str) -> list[DeploymentSpec]:
    """The pipeline with the config as its parameter; in distributed mode, training and evaluation too (and a
    sweep's trials when the config has a sweep section)."""
    execution = config.execution
    specs = [DeploymentSpec(PIPELINE_FLOW, config.name, execution.pools.default,
                            {"config": config.model_dump(mode="json")}, {}, cron, timezone)]
    if execution.mode == "distributed":
        specs += [DeploymentSpec(flow_name, config.name, execution.pools.gpu, {}, execution.gpu_job_variables)
                  for flow_name in (TRAIN_FLOW, EVALUATE_FLOW, *([SEARCH_FLOW] if config.sweep else []))]
    return specs


def prefect_yaml(specs: list[DeploymentSpec], command: str) -> str:
    """The same deployments as a prefect.yaml, for `prefect deploy --all` from the project's root."""
    import copy

    import yaml

    deployments = [{
        "name": spec.name, "entrypoint": spec.entrypoint,
        "work_pool": {"name": spec.work_pool, "job_variables": copy.deepcopy(spec.job_variables)},
        **({"parameters": spec.parameters} if spec.parameters else {}),
        "schedules": [{"cron": spec.cron, "timezone": spec.timezone}] if spec.cron else [],
    } for spec in specs]
    body = {"name": "adapterflow", "prefect-version": "3.8.8",
            "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}],
            "deployments": deployments}
    header = (f"# Deployments exactly as this command creates them:\n#   {command}\n"
              "# The same with Prefect's own CLI, from the repository root with PREFECT_API_URL set:\n"
              "#   prefect --no-prompt deploy --all\n")
    return header + yaml.safe_dump(body, sort_keys=False, width=110)


def ensure_pools(execution: ExecutionConfig) -> None:
    """Create the process work pools the config names, and set the GPU pool's concurrency when configured."""
    with get_client(sync_client=True) as client:
        ensure_work_pool(client, execution.pools.default, None)
        ensure_work_pool(client, execution.pools.gpu, execution.gpu_concurrency)


def deploy_config(config: PipelineConfig, cron: str | None, timezone: str) -> list[DeploymentSpec]:
    """Create or update the config's deployments from this checkout; the pipeline runs the config as it is now."""
    from prefect import Flow

    ensure_pools(config.execution)
    specs = deployment_specs(config, cron, timezone)
    for spec in specs:
        flow = Flow.from_source(source=str(PROJECT_ROOT), entrypoint=spec.entrypoint)
        flow.deploy(name=spec.name, work_pool_name=spec.work_pool, parameters=spec.parameters,
                    job_variables=spec.job_variables,
                    schedules=[Cron(spec.cron, timezone=spec.timezone)] if spec.cron else [],
                    print_next_steps=False, build=False, push=False, ignore_warnings=True)
    return specs
