"""Retrain or no-op: a scheduled run first asks, cheaply, whether anything that decides the result changed.

The retrain key covers the sources' content, the resolved config, the base model's weights and the code.
When it equals the key of the last successful run for the same registered model, and the model's frozen eval
set is still the one that run was evaluated on, the run ends as a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

import adapterflow
from adapterflow.core.hashing import cache_key, sha256_file, sha256_files
from adapterflow.data.python_docs import python_docs_version
from adapterflow.evaluation.eval_sets import TAG_EVAL_SET
from adapterflow.tracking.run import TAG_RUN_KIND
from schemas.data import DataSource, FileSource

TAG_RETRAIN_KEY = "adapterflow.retrain_key"
TAG_RETRAIN_REASON = "adapterflow.retrain_reason"
TAG_REGISTERED_MODEL = "adapterflow.registered_model"
TAG_SKIPPED = "adapterflow.skipped"
CODE_ROOTS = ("adapterflow", "flows", "tasks", "schemas")


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str


def source_digest(source: DataSource) -> str:
    """What a source's rows depend on: a file's bytes, or a generated source's options and package version."""
    if isinstance(source, FileSource):
        return sha256_file(source.path)
    return cache_key(source.model_dump(mode="json"), python_docs_version(source.package))


def code_digest() -> str:
    """A hash of adapterflow's own source files: a code change, committed or not, means a retrain."""
    project = Path(adapterflow.__file__).resolve().parent.parent
    files = [path for root in CODE_ROOTS for path in (project / root).rglob("*") if path.suffix in {".py", ".yaml"}]
    return sha256_files(files)


def retrain_key(sources: list[DataSource], config_sha256: str, base_sha256: str, code: str) -> str:
    return cache_key("retrain", [source_digest(source) for source in sources], config_sha256, base_sha256, code)


@dataclass(frozen=True)
class LastRun:
    """The newest successful fine-tuning run of a registered model: its id, retrain key and eval set."""

    run_id: str
    key: str | None
    eval_set: str | None


def decide_retrain(
    current_key: str, last: LastRun | None, skip_unchanged: bool = True, frozen_eval_set: str | None = None,
) -> RetrainDecision:
    """Pure: retrain unless the last successful run for this model had exactly these inputs and was evaluated on
    the model's frozen eval set as it is now (`frozen_eval_set`; None: there is none, or the split doesn't freeze)."""
    if last is None or last.key is None:
        return RetrainDecision(True, "no earlier successful run of this model")
    last_run_id = last.run_id
    if last.key != current_key:
        return RetrainDecision(True, f"sources, config, base model or code changed since run {last_run_id}")
    if frozen_eval_set and last.eval_set and frozen_eval_set != last.eval_set:
        return RetrainDecision(True, f"the model's frozen eval set changed since run {last_run_id} "
                                     f"({last.eval_set[:12]} -> {frozen_eval_set[:12]}, `adapterflow eval-set refresh`)")
    unchanged = f"unchanged: sources, config, base model and code equal run {last_run_id}'s"
    if not skip_unchanged:
        return RetrainDecision(True, f"{unchanged}, but execution.skip_unchanged is false")
    return RetrainDecision(False, unchanged)


def last_successful_run(client: MlflowClient, experiment_id: str, model_name: str) -> LastRun | None:
    """The newest finished fine-tuning run for `model_name`, or None."""
    runs = client.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"attributes.status = 'FINISHED' and tags.`{TAG_REGISTERED_MODEL}` = '{model_name}' "
                      f"and tags.`{TAG_RUN_KIND}` = 'finetune'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    tags = runs[0].data.tags
    return LastRun(runs[0].info.run_id, tags.get(TAG_RETRAIN_KEY), tags.get(TAG_EVAL_SET))
