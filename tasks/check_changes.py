"""Check changes: decide early and cheaply whether this run retrains or ends as a no-op."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from adapterflow.core.logs import stage_logger
from adapterflow.evaluation.eval_sets import find_eval_set
from adapterflow.orchestration.stage import stage
from adapterflow.registry.retrain import (
    TAG_REGISTERED_MODEL,
    TAG_RETRAIN_KEY,
    TAG_RETRAIN_REASON,
    code_digest,
    decide_retrain,
    last_successful_run,
    retrain_key,
)
from adapterflow.storage.records import BaseModelRef, ChangeCheck, RunContext
from adapterflow.storage.store import run_storage
from adapterflow.tracking.run import RunTracker
from schemas.pipeline import PipelineConfig


def check_run_changes(config: PipelineConfig, base: BaseModelRef, run: RunContext, client: MlflowClient) -> ChangeCheck:
    """Compare this run's retrain key with the last successful run's for the same registered model, and that
    run's eval set with the model's frozen one (which `adapterflow eval-set refresh` replaces)."""
    key = retrain_key(config.data.sources, run.config_sha256, base.sha256, code_digest())
    experiment_id = client.get_run(run.mlflow_run_id).info.experiment_id
    last = last_successful_run(client, experiment_id, config.registered_model_name)
    frozen = None
    if config.data.split.eval_set == "frozen" and last is not None:
        found = find_eval_set(client, run_storage(run), config.registered_model_name)
        frozen = found.id if found else None
    decision = decide_retrain(key, last, config.execution.skip_unchanged, frozen)
    return ChangeCheck(retrain=decision.retrain, reason=decision.reason, key=key)


@stage("check_changes", retries=2, retry_delay_seconds=5)
def check_changes(config: PipelineConfig, base: BaseModelRef, run: RunContext) -> ChangeCheck:
    """Tag the run with its retrain key and decide whether it trains."""
    client = MlflowClient()
    result = check_run_changes(config, base, run, client)
    RunTracker(run.mlflow_run_id, client).set_tags(
        {TAG_RETRAIN_KEY: result.key, TAG_REGISTERED_MODEL: config.registered_model_name,
         TAG_RETRAIN_REASON: result.reason})
    stage_logger().info("%s: %s", "retraining" if result.retrain else "nothing to do", result.reason)
    return result
