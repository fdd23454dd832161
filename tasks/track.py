"""Tracking: open the pipeline's one MLflow run at the start, close it with the summary at the end."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from adapterflow.core.hashing import sha256_json
from adapterflow.core.home import Home
from adapterflow.core.logs import scrub_secrets_from_logs, stage_logger
from adapterflow.orchestration.stage import is_transient
from adapterflow.registry.retrain import TAG_SKIPPED
from adapterflow.reporting.prefect_artifact import publish_summary_artifact
from adapterflow.storage.records import RunContext
from adapterflow.storage.store import Storage
from adapterflow.tracking.metric_buffer import FLUSH_DEADLINE_S
from adapterflow.tracking.run import (
    CONFIG_ARTIFACT_DIR,
    CONFIG_FILE,
    TAG_CHECKPOINT,
    TAG_CODE_VERSION,
    TAG_CONFIG_SHA,
    TAG_FAILURE,
    TAG_FLOW_RUN,
    TAG_RESUMED,
    TAG_RUN_KIND,
    TAG_RUN_NAME,
    RunTracker,
    code_version,
    ensure_experiment,
    flatten_params,
)
from schemas.data import PiiConfig
from schemas.pipeline import PipelineConfig


def new_run_name() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def config_sha256(config: PipelineConfig) -> str:
    """The hash a run is known by (retrain key, resume): its resolved config without the sweep section, which only
    `adapterflow sweep` reads (adding one must not make the next run retrain)."""
    return sha256_json(config.model_dump(mode="json", exclude={"sweep"}))


def open_run(
    config: PipelineConfig, home: Home, flow_run_id: str, kind: str = "finetune", client: MlflowClient | None = None
) -> RunContext:
    """Create the run folder and the MLflow run, or reopen the run of this config that was interrupted after a
    training checkpoint; log the resolved config, redacted, as params and as a YAML artifact."""
    client = client or MlflowClient()
    resolved = config.model_dump(mode="json")
    config_sha = config_sha256(config)
    experiment_id = ensure_experiment(client, config.name, home)
    interrupted = interrupted_run(client, experiment_id, config_sha) if kind == "finetune" else None
    if interrupted is not None:
        run_id, run_name = interrupted.info.run_id, interrupted.data.tags[TAG_RUN_NAME]
        client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        client.set_tag(run_id, TAG_FLOW_RUN, flow_run_id)
        client.set_tag(run_id, TAG_RESUMED, str(int(interrupted.data.tags.get(TAG_RESUMED, "0")) + 1))
        if TAG_FAILURE in interrupted.data.tags:
            client.delete_tag(run_id, TAG_FAILURE)
        stage_logger().info("resuming MLflow run %s (%s), interrupted after checkpoint %s", run_id, run_name,
                            interrupted.data.tags[TAG_CHECKPOINT])
    else:
        run_name = new_run_name()
        tags = {TAG_CONFIG_SHA: config_sha, TAG_CODE_VERSION: code_version(), TAG_FLOW_RUN: flow_run_id,
                TAG_RUN_NAME: run_name, TAG_RUN_KIND: kind}
        run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id  # hashes, ids, our names
    run_dir = home.run_dir(run_name)
    tracker = RunTracker(run_id, client, config.data.pii)
    tracker.log_params(flatten_params(tracker.redactor.value(resolved)))  # redacted before flattening cuts values
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(resolved, sort_keys=False))
    tracker.log_artifact(run_dir / CONFIG_FILE, CONFIG_ARTIFACT_DIR)
    return RunContext(
        run_name=run_name, run_dir=str(run_dir), home=str(home.root), mlflow_run_id=run_id,
        experiment=config.name, config_sha256=config_sha, storage=Storage.resolve(config.execution.storage, home).root,
        pii=config.data.pii,
    )


def interrupted_run(client: MlflowClient, experiment_id: str, config_sha: str) -> Run | None:
    """The newest training run of this config when it did not finish (failed, or still marked running after its
    process was killed) and saved a training checkpoint; None otherwise.

    The caller holds the model's retrain slot, so a run marked running is not running anywhere.
    """
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_CONFIG_SHA}` = '{config_sha}' and tags.`{TAG_RUN_KIND}` = 'finetune'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    if not runs or runs[0].info.status not in ("RUNNING", "FAILED") or TAG_CHECKPOINT not in runs[0].data.tags:
        return None
    return runs[0]


@task(name="start_tracking", retries=3, retry_delay_seconds=5, cache_policy=NO_CACHE)
def start_tracking(config: PipelineConfig, kind: str = "finetune") -> RunContext:
    scrub_secrets_from_logs()  # the flow's handlers exist by now: secrets never reach a log line
    run = open_run(config, Home.from_env(), str(flow_run.id or ""), kind)
    stage_logger().info("MLflow run %s in experiment %r, working folder %s", run.mlflow_run_id, run.experiment, run.run_dir)
    return run


def close_run(run: RunContext, summary: dict[str, Any], metrics_deadline_s: float = FLUSH_DEADLINE_S) -> None:
    """Deliver the metrics an MLflow outage held back (waiting up to `metrics_deadline_s` for the server), store
    the summary in the run folder and the MLflow run, and mark the run finished.

    The summary holds counts, ids and reasons (a data check's report was redacted when written): only secrets
    are scrubbed, so a no-op run never pays for building the PII scanner.
    """
    tracker = RunTracker(run.mlflow_run_id)
    tracker.flush_metrics(metrics_deadline_s)  # a finished run takes no more metrics
    tracker.log_dict(summary, "summary.json")
    tracker.client.set_terminated(run.mlflow_run_id, RunStatus.to_string(RunStatus.FINISHED))
    (Path(run.run_dir) / "summary.json").write_text(json.dumps(summary, indent=2))


# retried on transient failures only: one that outlasted the metric flush's own wait has said where the metrics are
@task(name="finish_tracking", retries=3, retry_delay_seconds=5, retry_condition_fn=is_transient, cache_policy=NO_CACHE)
def finish_tracking(run: RunContext, summary: dict[str, Any]) -> None:
    close_run(run, summary)
    publish_summary_artifact(summary, run.pii)  # the flow run's page in Prefect shows the outcome, redacted


@task(name="finish_unchanged", retries=3, retry_delay_seconds=5, cache_policy=NO_CACHE)
def finish_unchanged(run: RunContext, summary: dict[str, Any]) -> dict[str, Any]:
    """Close a no-op run: tagged as skipped, with the registered model's current aliases in its summary."""
    client = MlflowClient()
    try:
        aliases = client.get_registered_model(summary["registered_model"]).aliases
    except MlflowException:
        aliases = {}
    summary = summary | {"aliases": {alias: str(version) for alias, version in aliases.items()}}
    RunTracker(run.mlflow_run_id, client).set_tags({TAG_SKIPPED: "unchanged"})
    close_run(run, summary)
    stage_logger().info("no-op: %s", summary["reason"])
    return summary


def flow_run_pii(record: Any) -> PiiConfig | None:
    """The data.pii settings in a flow run's config parameter (a JSON dict in Prefect's records), if it has one."""
    pii = (((record.parameters or {}).get("config") or {}).get("data") or {}).get("pii")
    return PiiConfig.model_validate(pii) if isinstance(pii, dict) else None


def mark_run_failed(flow: Any, failed_run: Any, state: Any) -> None:
    """Flow hook: the MLflow run of a failed or crashed flow run ends as FAILED, with the reason (redacted) as a tag."""
    client = MlflowClient()
    runs = client.search_runs(
        experiment_ids=[e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`{TAG_FLOW_RUN}` = '{failed_run.id}'",
        max_results=1,
    )
    for run in runs:
        tracker = RunTracker(run.info.run_id, client, flow_run_pii(failed_run))
        tracker.flush_metrics(deadline_s=0)  # the curves up to the failure, if an outage held some back
        tracker.set_tags({TAG_FAILURE: state.message or "failed"})
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
