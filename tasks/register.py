"""Register: the adapter becomes a new version of the registered model, with full lineage, as `challenger`."""

from __future__ import annotations

from prefect.runtime import flow_run
from mlflow.tracking import MlflowClient

from adapterflow.evaluation import EVAL_METRICS
from adapterflow.models.base import base_model_provenance
from adapterflow.records import BaseModelRef, EvalResult, RegisteredVersion, RunContext, SplitResult, TrainResult
from adapterflow.registry import register_adapter, set_aliases
from adapterflow.stage import stage, stage_logger
from adapterflow.storage import run_storage
from adapterflow.tracking import (
    ALIAS_CHALLENGER, TAG_BASE_MODEL, TAG_BASE_MODEL_SHA, TAG_CODE_VERSION, TAG_CONFIG_SHA,
    TAG_DATASET_FINGERPRINT, TAG_FLOW_RUN, TAG_METHOD, code_version,
)
from schemas.pipeline import PipelineConfig


def lineage_tags(base: BaseModelRef, split: SplitResult, config: PipelineConfig, run: RunContext) -> dict[str, str]:
    """What a version was made from: base weights, data, config, method, code and the Prefect run."""
    return {
        TAG_BASE_MODEL: base.name,
        TAG_BASE_MODEL_SHA: base.sha256,
        TAG_DATASET_FINGERPRINT: split.fingerprint,
        TAG_CONFIG_SHA: run.config_sha256,
        TAG_METHOD: config.method.type,
        TAG_CODE_VERSION: code_version(),
        TAG_FLOW_RUN: str(flow_run.id or ""),
    }


def version_description(evaluation: EvalResult, config: PipelineConfig) -> str:
    """Markdown for the registry UI: the method and the eval metrics of every model compared."""
    columns = [name for name in EVAL_METRICS if name in evaluation.metrics["candidate"]]
    rows = "\n".join(f"| {name} | " + " | ".join(f"{metrics[column]:.4f}" for column in columns) + " |"
                     for name, metrics in evaluation.metrics.items())
    return (f"{config.method.type} fine-tune of {config.base_model.name}.\n\n"
            f"Base model: {base_model_provenance(config.base_model.name)}.\n\n"
            f"| model | {' | '.join(columns)} |\n|---|{'---|' * len(columns)}\n{rows}\n")


@stage("register", retries=3, retry_delay_seconds=5)
def register(
    trained: TrainResult, evaluation: EvalResult, base: BaseModelRef, split: SplitResult,
    config: PipelineConfig, run: RunContext,
) -> RegisteredVersion:
    """Log the adapter model in the run, register a new version and point `challenger` at it."""
    client = MlflowClient()
    name = config.registered_model_name
    tags = lineage_tags(base, split, config, run)
    tags |= {f"eval.candidate.{metric}": f"{value:.6g}" for metric, value in evaluation.metrics["candidate"].items()}
    adapter_dir = run_storage(run).fetch(trained.uri) / "adapter"
    version, uri = register_adapter(
        client, run.mlflow_run_id, name, str(adapter_dir), base, tags, version_description(evaluation, config)
    )
    set_aliases(client, name, {ALIAS_CHALLENGER: version})
    stage_logger().info("registered %s version %s as %s", name, version, ALIAS_CHALLENGER)
    return RegisteredVersion(model_name=name, version=version, model_uri=uri)
