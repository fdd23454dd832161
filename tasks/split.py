"""Split: a registered model's frozen eval set, or (first run, refresh, resplit) a seeded train/eval split by
prompt hash whose eval examples that repeat a training example (question and answer together) are removed,
with a warning when too few eval rows are left to decide promotion on; then a validation split carved from
train the same way, which everything that selects while training reads.

With a frozen eval set every new row goes to train except copies (exact or near, whole example) of a frozen
eval row: those are counted as leakage against the frozen set and left out.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from adapterflow.core.logs import stage_logger
from adapterflow.data.splitting import content_digest, split_rows
from adapterflow.evaluation.eval_sets import (
    TAG_EVAL_SET,
    TAG_EVAL_SET_CHANGED,
    champion_eval_set,
    eval_set_action,
    find_eval_set,
    freeze_eval_set,
    load_eval_set,
    record_eval_set,
    tag_registered_model,
)
from adapterflow.orchestration.stage import stage
from adapterflow.storage.records import FilterResult, RunContext, SplitResult
from adapterflow.storage.store import Storage, run_storage
from adapterflow.tracking.run import TAG_DATASET_FINGERPRINT, RunTracker
from schemas.data import LeakageConfig, SplitConfig


def split_with_eval_set(
    rows: FilterResult, config: SplitConfig, leakage: LeakageConfig, storage: Storage, workers: int,
    model_name: str, client: MlflowClient,
) -> SplitResult:
    """Split on the model's frozen eval set, freezing one first when it has none (or on refresh)."""
    found = find_eval_set(client, storage, model_name) if config.eval_set == "frozen" else None
    action = eval_set_action(config.eval_set, found)
    frozen = load_eval_set(storage, found, model_name) if action == "reuse" else None
    result = split_rows(rows, config, leakage, storage, workers, frozen)
    if action == "freeze":
        record_eval_set(client, storage, model_name, freeze_eval_set(storage, result.eval, result.eval_set))
    elif action == "reuse":
        tag_registered_model(client, model_name, found)  # a model registered after its set was frozen
    return result


def eval_set_change(champion_set: str | None, eval_set: str) -> str | None:
    """`<champion's set> -> <this run's set>` when a champion exists that was evaluated on another eval set."""
    if champion_set is None or champion_set == eval_set:
        return None
    return f"{champion_set or 'unknown'} -> {eval_set}"


@stage("split", retries=2)
def split(
    rows: FilterResult, config: SplitConfig, leakage: LeakageConfig, workers: int, run: RunContext,
    model_name: str | None = None,
) -> SplitResult:
    """Split on the registered model's frozen eval set (default: the experiment's name), remove leaked rows, and
    record the dataset fingerprint, the eval set and both splits in MLflow."""
    client = MlflowClient()
    model_name = model_name or run.experiment
    result = split_with_eval_set(rows, config, leakage, run_storage(run), workers, model_name, client)
    tracker = RunTracker(run.mlflow_run_id, client)
    change = eval_set_change(champion_eval_set(client, model_name), result.eval_set)
    tracker.set_tags({TAG_DATASET_FINGERPRINT: result.fingerprint, TAG_EVAL_SET: result.eval_set,
                      **({TAG_EVAL_SET_CHANGED: change} if change else {})})
    leaked = result.dropped.get("split.leak_exact", 0) + result.dropped.get("split.leak_near", 0)
    tracker.log_metrics({
        "data/train_split_rows": result.train.rows, "data/eval_split_rows": result.eval.rows,
        "data/validation_split_rows": result.validation.rows if result.validation else 0,
        "data/validation_leaks": result.dropped.get("split.validation_leak_exact", 0)
        + result.dropped.get("split.validation_leak_near", 0),
        "data/leak_exact": result.dropped.get("split.leak_exact", 0),
        "data/leak_near": result.dropped.get("split.leak_near", 0),
        "data/eval_rows_before_leakage": result.eval.rows + leaked, "data/eval_rows_after_leakage": result.eval.rows,
        "data/frozen_leak_exact": result.dropped.get("split.frozen_leak_exact", 0),
        "data/frozen_leak_near": result.dropped.get("split.frozen_leak_near", 0),
    })
    # each side under its own content digest (the fingerprint covers both): runs on the same eval set show the same
    tracker.log_dataset(result.train.path, "train", "training", content_digest(result.train))
    tracker.log_dataset(result.eval.path, "eval", "evaluation", content_digest(result.eval))
    if result.validation is not None:
        tracker.log_dataset(result.validation.path, "validation", "validation", content_digest(result.validation))
    logger = stage_logger()
    logger.info(
        "split %d train / %d eval rows (%d eval rows before leakage removal; leaked: %s), dataset fingerprint %s",
        result.train.rows, result.eval.rows, result.eval.rows + leaked, result.dropped or "none", result.fingerprint[:12],
    )
    frozen_leaks = result.dropped.get("split.frozen_leak_exact", 0) + result.dropped.get("split.frozen_leak_near", 0)
    logger.info("eval set %s (data.split.eval_set: %s); %d new row(s) left train as copies of frozen eval rows",
                result.eval_set, config.eval_set, frozen_leaks)
    if change:
        logger.warning("the champion was evaluated on another eval set (%s): its comparison with this run is made "
                       "on the new set, not on the numbers it was promoted with", change)
    if result.validation is not None:
        logger.info("validation split: %d rows carved from train (data.split.validation_size %g), what early "
                    "stopping and sweeps select on", result.validation.rows, config.validation_size)
    elif config.validation_size == 0:
        logger.info(result.validation_note)
    else:
        logger.warning("%s (data.split.validation_size, min_validation_rows)", result.validation_note)
    if result.eval_warning:
        logger.warning(result.eval_warning)
    return result
