"""Base model: resolve the configured model to a local folder and hash its weights, before data work starts."""

from __future__ import annotations

from pathlib import Path

from adapterflow.core.home import Home
from adapterflow.core.logs import stage_logger
from adapterflow.models.base import resolve_base_model
from adapterflow.orchestration.stage import stage
from adapterflow.storage.records import BaseModelRef, RunContext
from adapterflow.tracking.run import TAG_BASE_MODEL, TAG_BASE_MODEL_SHA, RunTracker
from schemas.base_model import BaseModelConfig


@stage("base_model", retries=2, retry_delay_seconds=10)
def prepare_base_model(config: BaseModelConfig, run: RunContext) -> BaseModelRef:
    """Materialise builtin models once, download hub models, and tag the run with the weights' hash."""
    reference = resolve_base_model(config, Home(Path(run.home)))
    RunTracker(run.mlflow_run_id).set_tags({TAG_BASE_MODEL: reference.name, TAG_BASE_MODEL_SHA: reference.sha256})
    stage_logger().info("base model %s at %s (sha256 %s)", reference.name, reference.path, reference.sha256[:12])
    return reference
