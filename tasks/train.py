"""Train: fine-tune the base model with the configured method; the adapter is cached in the store by its inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from adapterflow.core.devices import select_device_and_precision
from adapterflow.core.errors import AdapterflowError
from adapterflow.core.hashing import cache_key, code_key
from adapterflow.core.logs import stage_logger
from adapterflow.methods.artifacts import adapter_identity
from adapterflow.methods.memory_plan import halve_micro_batch, out_of_memory_advice
from adapterflow.orchestration.stage import stage
from adapterflow.registry import ChampionRef, find_champion
from adapterflow.storage.records import BaseModelRef, RunContext, TokenizedData, TrainResult
from adapterflow.storage.store import Storage, run_storage
from adapterflow.tracking.run import TAG_METHOD, TAG_STOPPED_EARLY, TAG_WARM_START, RunTracker, system_metrics
from adapterflow.training.checkpoints import CheckpointPlan, discard_checkpoints, newest_checkpoint
from adapterflow.training.probe import HeldOutProbe
from adapterflow.training.trainer import (
    TrainingOutcome,
    TrainingOutOfMemory,
    drop_frames,
    free_accelerator_memory,
    train_adapter,
)
from schemas.pipeline import PipelineConfig
from schemas.training import TrainingConfig

METRICS_FILE = "metrics.json"  # written last: its presence marks a complete adapter folder
CHECKPOINT_SETTINGS = {"checkpoint_steps", "keep_checkpoints"}  # where training stops safely, not what it learns


def adapter_key(
    tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, precision: str, device: str,
    start: str | None = None,
) -> str:
    """Everything that decides the trained weights: data, base weights and their dtype, method, training,
    numerics, the identity of the adapter a warm start continues from, and the code and libraries that train."""
    return cache_key(
        "adapter", code_key(__name__), tokenized.key, base.sha256, config.base_model.dtype, config.method.model_dump(),
        config.training.model_dump(exclude=CHECKPOINT_SETTINGS), config.tokenize.chat_template, precision, device, start,
    )


def warm_start_artifact(config: PipelineConfig, base: BaseModelRef) -> ChampionRef | None:
    """The champion to continue from when training.warm_start asks for it and there is one."""
    if config.training.warm_start != "champion":
        return None
    champion = find_champion(config.registered_model_name)
    if champion is None:
        stage_logger().info("training.warm_start: champion, but %s has none yet: training from scratch",
                            config.registered_model_name)
        return None
    if champion.base_sha256 != base.sha256:
        raise AdapterflowError(
            f"training.warm_start: champion v{champion.version} was trained on a base model with weights sha256 "
            f"{champion.base_sha256[:12]}..., this run uses {base.sha256[:12]}...",
            hint="warm start needs the champion's base model; set training.warm_start: none")
    return champion


def train_or_reuse(
    tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, storage: Storage, tracker: RunTracker | None,
    probe: HeldOutProbe | None = None,
) -> TrainResult:
    """Train into the store's adapters/<key>/ unless an adapter with the same key is there already. `probe`
    (single-process training only) measures the eval loss while training, which leaves the weights as they are."""
    device, precision = select_device_and_precision(config.execution.device, config.training.precision)
    champion = warm_start_artifact(config, base)
    start = adapter_identity(champion.base_sha256, champion.adapter_dir) if champion else None
    key = adapter_key(tokenized, base, config, precision, device.type, start)
    checkpoints = checkpoint_plan(config.training, storage, key)  # also without the cache: a retry goes on
    key, found = storage.reusable("adapters", key, METRICS_FILE, config.execution.cache)
    started_from = f"models:/{config.registered_model_name}/{champion.version}" if champion else None
    uri = storage.uri("adapters", key)
    if found is not None:
        saved = json.loads((found / METRICS_FILE).read_text())
        if tracker is not None:  # the run still shows the training curve it reuses
            for entry in saved["history"]:
                tracker.log_metrics({k: v for k, v in entry.items() if k != "step"}, step=int(entry["step"]))
        return TrainResult(key=key, uri=uri, metrics=saved["metrics"], skipped=True, warm_start_from=started_from,
                           stopped_early=saved.get("stopped_early"))
    options = dict(chat_template=config.tokenize.chat_template, max_length=tokenized.max_length,
                   task=tokenized.task, label_names=tokenized.label_names, base_dtype=config.base_model.dtype,
                   init_from=champion.adapter_dir if champion else None)
    tokenized_dir = storage.fetch(tokenized.uri)
    # failed, pruned or stopped: what it left is no adapter (checkpoints live elsewhere)
    with storage.staging("adapter") as staging:
        if config.training.distributed.num_processes > 1:
            from adapterflow.training.distributed import train_adapter_distributed

            resume_from = resume_point(checkpoints)
            outcome = train_adapter_distributed(tokenized_dir, base, config.method, config.training, device,
                                                precision, staging, tracker.run_id if tracker else None, **options,
                                                checkpoints=checkpoints, resume_from=resume_from)
        else:
            outcome = train_resumably(tokenized_dir, base, config, device, precision, staging, tracker, checkpoints,
                                      options | {"probe": probe})
    metrics = outcome.metrics | {"train/precision_bf16": float(precision == "bf16")}
    saved = {"metrics": metrics, "history": outcome.history, "stopped_early": outcome.stopped_early}
    (staging / METRICS_FILE).write_text(json.dumps(saved, indent=2))
    storage.publish(staging, "adapters", key, METRICS_FILE)
    if checkpoints is not None:
        discard_checkpoints(checkpoints)
    return TrainResult(key=key, uri=uri, metrics=metrics, warm_start_from=started_from,
                       stopped_early=outcome.stopped_early)


def checkpoint_plan(training: TrainingConfig, storage: Storage, key: str) -> CheckpointPlan | None:
    """Where training keeps its checkpoints: named by the adapter's key; None when training.checkpoint_steps is."""
    if training.checkpoint_steps is None:
        return None
    return CheckpointPlan(storage, key, training.checkpoint_steps, training.keep_checkpoints)


def resume_point(checkpoints: CheckpointPlan | None) -> Path | None:
    """The newest complete checkpoint to go on from, said in the log; None: training starts from the beginning."""
    resume_from = newest_checkpoint(checkpoints) if checkpoints else None
    if resume_from is not None:
        stage_logger().info("resuming training from its checkpoint at step %s (%s)",
                            resume_from.name.removeprefix("checkpoint-"), resume_from)
    return resume_from


def train_resumably(
    tokenized_dir: Path, base: BaseModelRef, config: PipelineConfig, device: torch.device, precision: str,
    staging: Path, tracker: RunTracker | None, checkpoints: CheckpointPlan | None, options: dict[str, Any],
) -> TrainingOutcome:
    """Train from the newest complete checkpoint, if there is one; after a CUDA out-of-memory, go on with half the
    micro-batch and twice the accumulation (training.fit_memory) until the micro-batch is 1."""
    training = config.training
    while True:
        resume_from = resume_point(checkpoints)
        if resume_from is not None and tracker is not None:
            tracker = RunTracker(tracker.run_id, tracker.client, resumed=True)
        try:
            return train_adapter(tokenized_dir, base, config.method, training, device, precision, staging, tracker,
                                 checkpoints=checkpoints, resume_from=resume_from, **options)
        except TrainingOutOfMemory as error:
            smaller = halve_micro_batch(error.training)
            if not training.fit_memory or smaller is None:
                raise out_of_memory_advice(error.training, device.type) from error.__cause__
            stage_logger().warning(
                "out of memory on %s with batch_size %d x %d accumulation steps: going on with %d x %d (the same "
                "effective batch)", device.type, error.training.batch_size, error.training.gradient_accumulation_steps,
                smaller.batch_size, smaller.gradient_accumulation_steps)
            if tracker is not None:
                tracker.log_metrics({"memory/oom_batch_size": float(smaller.batch_size)})
            training = smaller
            drop_frames(error)
        free_accelerator_memory(device)  # out of the except block, where the error still held the failed model


def describe_validation(result: TrainResult) -> str:
    """The validation curve's outcome for the train log line: the step kept, what validation cost, why it stopped."""
    metrics = result.metrics
    if "train/best_step" not in metrics:
        return ""
    kept = (f"; kept step {metrics['train/kept_step']:.0f} of {metrics['train/steps']:.0f} "
            f"(best val/loss {metrics['val/best_loss']:.4f} at step {metrics['train/best_step']:.0f})")
    cost = f", validation {100 * metrics['train/validation_share']:.0f}% of training time"
    return kept + cost + (f"; {result.stopped_early}" if result.stopped_early else "")


@stage("train", retries=1, retry_delay_seconds=30, tags=["gpu"])
def train(tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, run: RunContext) -> TrainResult:
    """Train (or reuse) the adapter and log its training metrics."""
    tracker = RunTracker(run.mlflow_run_id)
    tracker.set_tags({TAG_METHOD: config.method.type})
    with system_metrics(run.mlflow_run_id):  # CPU, memory and GPU use while it trains, as system/* metrics
        result = train_or_reuse(tokenized, base, config, run_storage(run), tracker)
    tracker.log_metrics(result.metrics)
    tracker.flush_metrics()  # on a GPU worker the buffer lives on that machine: deliver it before handing back
    if result.warm_start_from:
        tracker.set_tags({TAG_WARM_START: result.warm_start_from})
    if result.stopped_early:
        tracker.set_tags({TAG_STOPPED_EARLY: result.stopped_early})
    stage_logger().info(
        "%s adapter %s: final loss %.4f, %.0f real tokens/s, %.1f%% padding%s",
        "reused" if result.skipped else "trained", result.key[:12], result.metrics["train/final_loss"],
        result.metrics["train/tokens_per_second"], 100 * result.metrics["train/padding_share"],
        describe_validation(result),
    )
    return result
