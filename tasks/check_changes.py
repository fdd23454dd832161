"""Check changes: decide early and cheaply whether this run retrains or ends as a no-op."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from adapterflow.records import BaseModelRef, ChangeCheck, RunContext
from adapterflow.retrain import (
    TAG_REGISTERED_MODEL, TAG_RETRAIN_KEY, TAG_RETRAIN_REASON, code_digest, decide_retrain, last_successful_run,
    retrain_key,
)
from adapterflow.stage import stage, stage_logger
from adapterflow.tracking import RunTracker
from schemas.pipeline import PipelineConfig


def check_run_changes(config: PipelineConfig, base: BaseModelRef, run: RunContext, client: MlflowClient) -> ChangeCheck:
    """Compare this run's retrain key with the last successful run's for the same registered model."""
    key = retrain_key(config.data.sources, run.config_sha256, base.sha256, code_digest())
    experiment_id = client.get_run(run.mlflow_run_id).info.experiment_id
    last_key, last_run = last_successful_run(client, experiment_id, config.registered_model_name)
    decision = decide_retrain(key, last_key, last_run, config.execution.skip_unchanged)
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
