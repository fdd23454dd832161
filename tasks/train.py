"""Train: fine-tune the base model with the configured method; the adapter is cached in the store by its inputs."""

from __future__ import annotations

import json
import shutil

from adapterflow.devices import select_device, select_precision
from adapterflow.hashing import cache_key
from adapterflow.records import BaseModelRef, RunContext, TokenizedData, TrainResult
from adapterflow.stage import stage, stage_logger
from adapterflow.storage import Storage, run_storage
from adapterflow.tracking import TAG_METHOD, RunTracker
from adapterflow.training.trainer import train_adapter
from schemas.pipeline import PipelineConfig

TRAIN_VERSION = 2  # bump when training code changes what the same inputs produce
METRICS_FILE = "metrics.json"  # written last: its presence marks a complete adapter folder


def adapter_key(tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, precision: str, device: str) -> str:
    """Everything that decides the trained weights: data, base weights, method, training, numerics."""
    return cache_key(
        "adapter", TRAIN_VERSION, tokenized.key, base.sha256, config.method.model_dump(),
        config.training.model_dump(), config.tokenize.chat_template, precision, device,
    )


def train_or_reuse(
    tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, storage: Storage, tracker: RunTracker | None
) -> TrainResult:
    """Train into the store's adapters/<key>/ unless an adapter with the same key is there already."""
    device = select_device(config.execution.device)
    precision = select_precision(config.training.precision, device)
    key = adapter_key(tokenized, base, config, precision, device.type)
    uri = storage.uri("adapters", key)
    found = storage.lookup("adapters", key, METRICS_FILE) if config.execution.cache else None
    if found is not None:
        saved = json.loads((found / METRICS_FILE).read_text())
        if tracker is not None:  # the run still shows the training curve it reuses
            for entry in saved["history"]:
                tracker.log_metrics({k: v for k, v in entry.items() if k != "step"}, step=int(entry["step"]))
        return TrainResult(key=key, uri=uri, metrics=saved["metrics"], skipped=True)
    staging = storage.staging_dir("adapter")
    options = dict(chat_template=config.tokenize.chat_template, max_length=config.tokenize.max_length,
                   task=tokenized.task, label_names=tokenized.label_names, base_dtype=config.base_model.dtype)
    tokenized_dir = storage.fetch(tokenized.uri)
    outcome = train_adapter(tokenized_dir, base, config.method, config.training, device, precision, staging, tracker,
                            **options)
    shutil.rmtree(staging / "checkpoints", ignore_errors=True)
    metrics = outcome.metrics | {"train/precision_bf16": float(precision == "bf16")}
    (staging / METRICS_FILE).write_text(json.dumps({"metrics": metrics, "history": outcome.history}, indent=2))
    # execution.cache=false retrains and replaces the cached adapter
    storage.publish(staging, "adapters", key, METRICS_FILE, replace=True)
    return TrainResult(key=key, uri=uri, metrics=metrics)


@stage("train", retries=1, retry_delay_seconds=30, tags=["gpu"])
def train(tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, run: RunContext) -> TrainResult:
    """Train (or reuse) the adapter and log its training metrics."""
    tracker = RunTracker(run.mlflow_run_id)
    tracker.set_tags({TAG_METHOD: config.method.type})
    result = train_or_reuse(tokenized, base, config, run_storage(run), tracker)
    tracker.log_metrics(result.metrics)
    stage_logger().info(
        "%s adapter %s: final loss %.4f, %.0f real tokens/s, %.1f%% padding",
        "reused" if result.skipped else "trained", result.key[:12], result.metrics["train/final_loss"],
        result.metrics["train/tokens_per_second"], 100 * result.metrics["train/padding_share"],
    )
    return result
