"""Train: fine-tune the base model with the configured method; the adapter is cached by its inputs."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from adapterflow.devices import select_device, select_precision
from adapterflow.hashing import cache_key
from adapterflow.home import Home
from adapterflow.records import BaseModelRef, RunContext, TokenizedData, TrainResult
from adapterflow.stage import stage, stage_logger
from adapterflow.tracking import TAG_METHOD, RunTracker
from adapterflow.training.trainer import train_adapter
from schemas.pipeline import PipelineConfig

TRAIN_VERSION = 2  # bump when training code changes what the same inputs produce


def adapter_key(tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, precision: str, device: str) -> str:
    """Everything that decides the trained weights: data, base weights, method, training, numerics."""
    return cache_key(
        "adapter", TRAIN_VERSION, tokenized.key, base.sha256, config.method.model_dump(),
        config.training.model_dump(), config.tokenize.chat_template, precision, device,
    )


def train_or_reuse(
    tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, home: Home, tracker: RunTracker | None
) -> TrainResult:
    """Train into cache/adapters/<key>/ unless an adapter with the same key is there already."""
    device = select_device(config.execution.device)
    precision = select_precision(config.training.precision, device)
    key = adapter_key(tokenized, base, config, precision, device.type)
    target = home.cache_dir("adapters", key)
    metrics_file = target / "metrics.json"
    if config.execution.cache and metrics_file.is_file():
        saved = json.loads(metrics_file.read_text())
        if tracker is not None:  # the run still shows the training curve it reuses
            for entry in saved["history"]:
                tracker.log_metrics({k: v for k, v in entry.items() if k != "step"}, step=int(entry["step"]))
        return TrainResult(key=key, adapter_dir=str(target / "adapter"), metrics=saved["metrics"], skipped=True)
    home.cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="adapter-", dir=home.cache))
    outcome = train_adapter(
        Path(tokenized.path), base, config.method, config.training, device, precision, staging, tracker,
        chat_template=config.tokenize.chat_template, max_length=config.tokenize.max_length,
        task=tokenized.task, label_names=tokenized.label_names, base_dtype=config.base_model.dtype,
    )
    shutil.rmtree(staging / "checkpoints", ignore_errors=True)
    metrics = outcome.metrics | {"train/precision_bf16": float(precision == "bf16")}
    (staging / "metrics.json").write_text(json.dumps({"metrics": metrics, "history": outcome.history}, indent=2))
    if target.exists():
        shutil.rmtree(target)  # execution.cache=false retrains and replaces the cached adapter
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.replace(target)
    return TrainResult(key=key, adapter_dir=str(target / "adapter"), metrics=metrics)


@stage("train", retries=1, retry_delay_seconds=30, tags=["gpu"])
def train(tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, run: RunContext) -> TrainResult:
    """Train (or reuse) the adapter and log its training metrics."""
    tracker = RunTracker(run.mlflow_run_id)
    tracker.set_tags({TAG_METHOD: config.method.type})
    result = train_or_reuse(tokenized, base, config, Home(Path(run.home)), tracker)
    tracker.log_metrics(result.metrics)
    stage_logger().info(
        "%s adapter %s: final loss %.4f, %.0f real tokens/s, %.1f%% padding",
        "reused" if result.skipped else "trained", result.key[:12], result.metrics["train/final_loss"],
        result.metrics["train/tokens_per_second"], 100 * result.metrics["train/padding_share"],
    )
    return result
