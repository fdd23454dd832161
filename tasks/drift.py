"""Drift: profile the rows this run trains on (data/profile.json), compare them with the current champion's
profile and log what changed (data/drift.json, data/drift.md, drift/<feature> metrics), before any GPU time.

No champion, or a champion whose run logged no profile: the report says there is nothing to compare with.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.logs import stage_logger
from adapterflow.data.drift import drift_metric, drift_report, example_keys, row_changes
from adapterflow.data.profile import data_profile, previews_by_prompt
from adapterflow.data.tables import iter_rows
from adapterflow.orchestration.stage import stage
from adapterflow.registry.client import alias_version
from adapterflow.reporting.drift import drift_markdown
from adapterflow.storage.records import DataTable, DriftResult, RunContext, SplitResult
from adapterflow.storage.store import Storage, run_storage
from adapterflow.tracking.run import ALIAS_CHAMPION, RunTracker

PROFILE_ARTIFACT = "data/profile.json"
DRIFT_ARTIFACT = "data/drift.json"
DRIFT_MARKDOWN = "data/drift.md"
NOT_STORED = "(the champion's rows are no longer in the store)"


def champion_profile(client: MlflowClient, model_name: str) -> tuple[str | None, dict[str, Any] | None]:
    """(the champion's version, the profile its run logged); None for what there isn't."""
    version = alias_version(client, model_name, ALIAS_CHAMPION)
    if version is None:
        return None, None
    try:
        run_id = client.get_model_version(model_name, version).run_id
        logged = {artifact.path for artifact in client.list_artifacts(run_id, "data")}
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):  # the version's run was deleted
            return version, None
        raise
    if PROFILE_ARTIFACT not in logged:  # a champion trained before profiles were logged
        return version, None
    with tempfile.TemporaryDirectory(prefix="adapterflow-profile-") as folder:
        return version, json.loads(Path(client.download_artifacts(run_id, PROFILE_ARTIFACT, folder)).read_text())


def stored_train_rows(storage: Storage, profile: dict[str, Any], task: str) -> DataTable | None:
    """The champion's training rows from the store, when the store still holds them."""
    if not profile.get("dataset_uri"):
        return None
    try:
        folder = storage.fetch(profile["dataset_uri"])
    except AdapterflowError:
        return None
    path = folder / "train.parquet"
    return DataTable(path=str(path), rows=profile["train_rows"], task=task) if path.is_file() else None


def quoted_examples(changes: dict[str, list[str]], old_rows: DataTable | None, new_rows: DataTable) -> dict[str, list]:
    """Up to 3 rows of each change, quoted from this run's rows and (removed, old answers) the champion's."""
    keys = example_keys(changes)
    new = previews_by_prompt(iter_rows(new_rows), set(keys["added"]) | set(keys["changed"]))
    wanted_old = set(keys["removed"]) | set(keys["changed"])
    old = {} if old_rows is None else previews_by_prompt(iter_rows(old_rows), wanted_old)
    return {
        "added": [new[key] for key in keys["added"] if key in new],
        "removed": [old.get(key, {"prompt": NOT_STORED, "answer": ""}) for key in keys["removed"]],
        "changed": [{**new[key], "answer_before": old[key]["answer"] if key in old else NOT_STORED}
                    for key in keys["changed"] if key in new],
    }


def drift_since_champion(
    split: SplitResult, counts: dict[str, Any], model_name: str, run: RunContext, client: MlflowClient,
) -> DriftResult:
    """Profile this run's training rows, compare them with the champion's profile, and log both with the report."""
    profile = data_profile(iter_rows(split.train), counts, split.eval_set, split.uri)
    tracker = RunTracker.for_run(run, client)
    tracker.log_dict(profile, PROFILE_ARTIFACT)
    version, old = champion_profile(client, model_name)
    if old is None:
        report = drift_report(None, profile)
    else:
        examples = quoted_examples(row_changes(old["rows"], profile["rows"]),
                                   stored_train_rows(run_storage(run), old, split.train.task), split.train)
        report = drift_report(old, profile, examples, compared_with=f"champion v{version}")
        tracker.log_metrics({drift_metric(feature): score for feature, score in report["scores"].items()})
    report = tracker.redactor.value(report)
    tracker.log_dict(report, DRIFT_ARTIFACT)
    tracker.log_text("\n".join(drift_markdown(report)).lstrip() + "\n", DRIFT_MARKDOWN)
    return DriftResult(champion_version=version if old is not None else None, report=report)


@stage("drift", retries=2)
def report_drift(split: SplitResult, counts: dict[str, Any], model_name: str, run: RunContext) -> DriftResult:
    """What changed since the champion's training data, logged to the run before training starts."""
    result = drift_since_champion(split, counts, model_name, run, MlflowClient())
    report, logger = result.report, stage_logger()
    if report["note"]:
        logger.info("drift: %s", report["note"])
    else:
        rows = report["rows"]
        logger.info("drift since %s: %d rows added, %d removed, %d changed; scores %s", report["compared_with"],
                    rows["added"], rows["removed"], rows["changed"],
                    ", ".join(f"{feature} {score:.3g}" for feature, score in report["scores"].items()))
    return result
