"""Training, evaluation and a sweep's search as flows of their own, for a worker of the GPU work pool on another
machine, and the pipeline's stages that run them there or in this process (`on_gpu_pool`).

The worker shares only the Prefect server, the MLflow server and the store with the pipeline: its flows
take records of storage URIs, find the base model by name in their own ADAPTERFLOW_HOME (checked by
sha256), and hand their record back through the store.
"""

# No `from __future__ import annotations`: Prefect builds each flow's parameter model from real annotations,
# and a flow loaded from its file (serve, workers) could not resolve them as strings.

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from prefect import flow
from pydantic import BaseModel

from adapterflow.core.home import configure_environment
from adapterflow.core.logs import quiet_third_party, scrub_secrets_from_logs, stage_logger
from adapterflow.evaluation.forgetting import load_general_passages
from adapterflow.models.base import base_model_here
from adapterflow.orchestration.remote import run_on_pool
from adapterflow.storage.records import (
    BaseModelRef,
    EvalResult,
    RunContext,
    SearchResult,
    SplitResult,
    TokenizedData,
    TrainResult,
)
from adapterflow.storage.store import record_name, run_storage
from adapterflow.tracking.run import tracking_uri
from schemas.pipeline import PipelineConfig
from tasks.evaluate import evaluate
from tasks.search import search
from tasks.train import train

FLOW_PREFIX = "adapterflow-"
TRAIN_FLOW = f"{FLOW_PREFIX}train"
EVALUATE_FLOW = f"{FLOW_PREFIX}evaluate"
SEARCH_FLOW = f"{FLOW_PREFIX}search"
Record = TypeVar("Record", bound=BaseModel)


def on_worker(config: dict[str, Any]) -> PipelineConfig:
    """Set up a worker's flow run (no CLI ran first there); the pipeline's config, validated without requiring its
    data files on this machine."""
    configure_environment()
    quiet_third_party()
    scrub_secrets_from_logs()  # the worker's own handlers: secrets never reach a log line
    return PipelineConfig.model_validate(config, context={"foreign_paths": True})


@flow(name=TRAIN_FLOW)
def train_on_worker(tokenized: TokenizedData, base: BaseModelRef, config: dict[str, Any], run: RunContext) -> str:
    """Train (or reuse) the adapter on this worker; the record goes to the store, its name is returned."""
    pipeline = on_worker(config)
    record = train(tokenized, base_model_here(base, pipeline.base_model), pipeline, run)
    return hand_back(TRAIN_FLOW, run, record)


@flow(name=EVALUATE_FLOW)
def evaluate_on_worker(
    trained: TrainResult, tokenized: TokenizedData, split: SplitResult, base: BaseModelRef, config: dict[str, Any],
    run: RunContext, general_set: str | None = None,
) -> str:
    """Evaluate base, candidate and champion on this worker; the record goes to the store. `general_set`: the
    store's record of the user's general set (see ship_general_set)."""
    pipeline = on_worker(config)
    passages = run_storage(run).get_json(general_set) if general_set else None
    record = evaluate(trained, tokenized, split, base_model_here(base, pipeline.base_model), pipeline, run, passages)
    return hand_back(EVALUATE_FLOW, run, record)


@flow(name=SEARCH_FLOW)
def search_on_worker(tokenized: TokenizedData, base: BaseModelRef, config: dict[str, Any], trials: int,
                     run: RunContext) -> str:
    """Run a sweep's trials on this worker (each trains here, pruned from here); the record goes to the store."""
    pipeline = on_worker(config)
    record = search(tokenized, base_model_here(base, pipeline.base_model), pipeline, trials, run)
    return hand_back(SEARCH_FLOW, run, record)


def train_stage(tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, run: RunContext) -> TrainResult:
    """Train in this process (execution.mode local) or as a flow run on the GPU pool (distributed)."""
    return on_gpu_pool(TRAIN_FLOW, partial(train, tokenized, base, config, run), TrainResult, config, run,
                       tokenized=tokenized, base=base)


def evaluate_stage(
    trained: TrainResult, tokenized: TokenizedData, split: SplitResult, base: BaseModelRef, config: PipelineConfig,
    run: RunContext,
) -> EvalResult:
    """Evaluate in this process (execution.mode local) or as a flow run on the GPU pool (distributed)."""
    local = partial(evaluate, trained, tokenized, split, base, config, run)
    return on_gpu_pool(EVALUATE_FLOW, local, EvalResult, config, run, trained=trained, tokenized=tokenized,
                       split=split, base=base, general_set=ship_general_set(config, run))


def search_stage(
    tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, trials: int, run: RunContext,
) -> SearchResult:
    """Run a sweep's trials in this process (execution.mode local) or as one flow run on the GPU pool."""
    return on_gpu_pool(SEARCH_FLOW, partial(search, tokenized, base, config, trials, run), SearchResult, config, run,
                       tokenized=tokenized, base=base, trials=trials)


def ship_general_set(config: PipelineConfig, run: RunContext) -> str | None:
    """The passages of the user's evaluation.general_set, put in the store for a worker on another machine (which
    has no copy of the file); the record's name, or None where no worker needs it: for the packaged set, which
    every machine has, and in execution.mode local."""
    settings = config.evaluation
    if config.execution.mode == "local" or settings.general_set is None or not settings.general_passages:
        return None
    name = record_name(run, "general_set")
    run_storage(run).put_json(name, load_general_passages(settings.general_set, settings.general_passages))
    return name


def flow_record(flow_name: str, run: RunContext) -> str:
    """Where a GPU flow leaves its record for the pipeline: named by its stage (records/<run id>/train.json)."""
    return record_name(run, flow_name.removeprefix(FLOW_PREFIX))


def hand_back(flow_name: str, run: RunContext, record: BaseModel) -> str:
    """Put a worker's record in the store for the pipeline that started `flow_name`; the name it has there."""
    return run_storage(run).put_json(flow_record(flow_name, run), record.model_dump(mode="json"))


def on_gpu_pool(
    flow_name: str, local: Callable[[], Record], record_type: type[Record], config: PipelineConfig, run: RunContext,
    **records: BaseModel | int | str | None,
) -> Record:
    """`local()` in this process (execution.mode local), or the flow `flow_name` run on the GPU pool with `records`
    as its parameters (distributed), its record read back from the store."""
    if config.execution.mode == "local":
        return local()
    run_gpu_flow(flow_name, config, run, **records)
    return record_type.model_validate(run_storage(run).get_json(flow_record(flow_name, run)))


def machine_local_services(storage_root: str, tracking_uri: str) -> list[str]:
    """What a GPU worker on another machine could not reach: a local folder store, a file-based MLflow store."""
    found = []
    if "://" not in storage_root:
        found.append(f"the store is the local folder {storage_root} (set execution.storage or ADAPTERFLOW_STORAGE "
                     "to s3://... or a shared folder)")
    if tracking_uri.startswith(("sqlite:", "file:", "/")) or "://" not in tracking_uri:
        found.append(f"MLflow is the local store {tracking_uri} (set MLFLOW_TRACKING_URI to a tracking server)")
    return found


def run_gpu_flow(
    flow_name: str, config: PipelineConfig, run: RunContext, **records: BaseModel | int | str | None,
) -> None:
    """Run `flow_name` on the GPU pool with the records, the config and the run as its parameters, and wait for it."""
    for problem in machine_local_services(run.storage, tracking_uri()):
        stage_logger().warning("execution.mode is distributed but %s: only a worker on this machine can serve it",
                               problem)
    execution = config.execution
    parameters = {name: record.model_dump(mode="json") if isinstance(record, BaseModel) else record
                  for name, record in records.items()}
    parameters |= {"config": config.model_dump(mode="json"), "run": run.model_dump(mode="json")}
    run_on_pool(flow_name, config.name, execution.pools.gpu, parameters, execution.gpu_job_variables,
                execution.pickup_timeout_s)
