"""Register: the adapter becomes a new version of the registered model, with full lineage, as `challenger`.

The registered artifact records the system prompt training used, so serving shapes prompts the same way. An
adapter whose content equals an existing version's is reported as that version instead of registered again.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient
from prefect.runtime import flow_run

from adapterflow.core.logs import stage_logger
from adapterflow.evaluation.eval_sets import TAG_EVAL_SET
from adapterflow.evaluation.metrics import EVAL_METRICS
from adapterflow.methods.artifacts import adapter_identity, stage_with_prompting
from adapterflow.models.base import base_model_provenance, load_tokenizer
from adapterflow.orchestration.stage import stage
from adapterflow.registry import register_adapter, set_aliases
from adapterflow.registry.client import find_identical_version
from adapterflow.storage.records import (
    BaseModelRef,
    EvalResult,
    RegisteredVersion,
    RunContext,
    SplitResult,
    TrainResult,
)
from adapterflow.storage.store import run_storage
from adapterflow.tokenization.chat import tokenizer_fingerprint
from adapterflow.tracking.run import (
    ALIAS_CHALLENGER,
    TAG_ADAPTER_SHA,
    TAG_BASE_MODEL,
    TAG_BASE_MODEL_SHA,
    TAG_CODE_VERSION,
    TAG_CONFIG_SHA,
    TAG_DATASET_FINGERPRINT,
    TAG_EVAL_ROWS,
    TAG_FLOW_RUN,
    TAG_METHOD,
    TAG_MLFLOW_RUN,
    TAG_TOKENIZER_SHA,
    TAG_TRAIN_ROWS,
    RunTracker,
    code_version,
)
from schemas.pipeline import PipelineConfig

TAG_IDENTICAL = "adapterflow.identical_to"  # on the run: models:/NAME/VERSION its adapter equals


def lineage_tags(base: BaseModelRef, split: SplitResult, config: PipelineConfig, run: RunContext) -> dict[str, str]:
    """What a version was made from: base weights, data and its counts, config, method, code and both runs."""
    return {
        TAG_BASE_MODEL: base.name,
        TAG_BASE_MODEL_SHA: base.sha256,
        TAG_DATASET_FINGERPRINT: split.fingerprint,
        TAG_EVAL_SET: split.eval_set,
        TAG_TRAIN_ROWS: str(split.train.rows),
        TAG_EVAL_ROWS: str(split.eval.rows),
        TAG_CONFIG_SHA: run.config_sha256,
        TAG_METHOD: config.method.type,
        TAG_CODE_VERSION: code_version(),
        TAG_FLOW_RUN: str(flow_run.id or ""),
        TAG_MLFLOW_RUN: run.mlflow_run_id,
    }


def artifact_tags(artifact_dir: Path, base: BaseModelRef) -> dict[str, str]:
    """What the artifact itself is: its content hash, and the tokenizer with the chat template it was trained with."""
    return {TAG_ADAPTER_SHA: adapter_identity(base.sha256, artifact_dir),
            TAG_TOKENIZER_SHA: tokenizer_fingerprint(load_tokenizer(artifact_dir))}


def version_description(evaluation: EvalResult, config: PipelineConfig) -> str:
    """Markdown for the registry UI: the method and the eval metrics of every model compared."""
    columns = [name for name in EVAL_METRICS if name in evaluation.metrics["candidate"]]
    rows = "\n".join(f"| {name} | " + " | ".join(f"{metrics[column]:.4f}" for column in columns) + " |"
                     for name, metrics in evaluation.metrics.items())
    return (f"{config.method.type} fine-tune of {config.base_model.name}.\n\n"
            f"Base model: {base_model_provenance(config.base_model.name)}.\n\n"
            f"| model | {' | '.join(columns)} |\n|---|{'---|' * len(columns)}\n{rows}\n")


def recorded_system_prompt(system_prompt: str | None, run: RunContext) -> str | None:
    """The system prompt as the registered model records it: redacted like everything else that leaves for MLflow
    (a secret or personal data in it would otherwise be stored with every version)."""
    if system_prompt is None:
        return None
    redacted = RunTracker.for_run(run).redactor.text(system_prompt)
    if redacted != system_prompt:
        stage_logger().warning("tokenize.system_prompt holds a secret or personal data: the registered model records "
                               "it redacted, and serving puts the redacted text before prompts")
    return redacted


def own_version(client: MlflowClient, name: str, run_id: str, adapter_sha256: str) -> str | None:
    """The version of `name` this MLflow run registered with this adapter, if it did."""
    for version in client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
        if version.tags.get(TAG_ADAPTER_SHA) == adapter_sha256:
            return str(version.version)
    return None


@stage("register", retries=3, retry_delay_seconds=5)
def register(
    trained: TrainResult, evaluation: EvalResult, base: BaseModelRef, split: SplitResult,
    config: PipelineConfig, run: RunContext,
) -> RegisteredVersion:
    """Log the adapter model in the run, register a new version and point `challenger` at it; an adapter equal
    to an existing version's is that version (logged and tagged on the run), not a new one."""
    client = MlflowClient()
    name = config.registered_model_name
    tags = lineage_tags(base, split, config, run)
    tags |= {f"eval.candidate.{metric}": f"{value:.6g}" for metric, value in evaluation.metrics["candidate"].items()}
    with tempfile.TemporaryDirectory(prefix="adapterflow-register-") as staging:
        adapter_dir = stage_with_prompting(run_storage(run).fetch(trained.uri) / "adapter", Path(staging) / "adapter",
                                           recorded_system_prompt(config.tokenize.system_prompt, run))
        tags |= artifact_tags(adapter_dir, base)
        own = own_version(client, name, run.mlflow_run_id, tags[TAG_ADAPTER_SHA])
        if own is not None:  # a retried stage, or a resumed run, that registered it already: the same version
            stage_logger().info("%s version %s was registered by this run already", name, own)
            return RegisteredVersion(model_name=name, version=own, model_uri=f"models:/{name}/{own}")
        identical = find_identical_version(client, name, tags[TAG_ADAPTER_SHA])
        if identical is not None:
            uri = f"models:/{name}/{identical}"
            RunTracker(run.mlflow_run_id).set_tags({TAG_IDENTICAL: uri})
            stage_logger().info("the adapter is identical to %s version %s (%s %s...): no new version registered",
                                name, identical, TAG_ADAPTER_SHA, tags[TAG_ADAPTER_SHA][:12])
            return RegisteredVersion(model_name=name, version=identical, model_uri=uri, identical=True)
        version, uri = register_adapter(
            client, run.mlflow_run_id, name, str(adapter_dir), base, tags, version_description(evaluation, config)
        )
    set_aliases(client, name, {ALIAS_CHALLENGER: version})
    stage_logger().info("registered %s version %s as %s", name, version, ALIAS_CHALLENGER)
    return RegisteredVersion(model_name=name, version=version, model_uri=uri)
