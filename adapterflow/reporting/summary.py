"""The run summary: one dict that the CLI prints, `--summary-json` writes and MLflow stores."""

from __future__ import annotations

from typing import Any

from adapterflow.storage.records import ChangeCheck, DriftResult, PreparedData, RunContext, SearchResult, StageRecord
from schemas.pipeline import PipelineConfig

PIPELINE_AFTER_CHECK = ["data", "drift", "train", "evaluate", "register", "promote"]


def build_summary(run: RunContext, data: PreparedData, stages: dict[str, StageRecord], method: str) -> dict[str, Any]:
    """The summary of a finished run from its data report and the records its stages returned."""
    trained, evaluation = stages["train"], stages["evaluate"]
    registered, promotion = stages["register"], stages["promote"]
    drift = stages.get("drift")
    return {
        "mlflow_run_id": run.mlflow_run_id,
        "experiment": run.experiment,
        "outcome": "trained",
        "run_name": run.run_name,
        "run_dir": run.run_dir,
        "registered_model": registered.model_name,
        "model_version": registered.version,
        "model_uri": registered.model_uri,
        "identical_to_existing": registered.identical,  # the adapter equals model_version's: nothing was registered
        "method": method,
        "task": data.tokenize.task,
        "promoted": promotion.promoted,
        "promotion_reason": promotion.reason,
        "promotion_reasons": promotion.reasons,  # every check of the gate, pass or FAIL
        "aliases": promotion.aliases,
        "champion_compared": evaluation.champion_version,
        "metrics": evaluation.metrics,
        "training": trained.metrics,
        "stopped_early": trained.stopped_early,  # why training ended before epochs or max_steps (None: it didn't)
        "data": data.report["counts"],
        "data_report": f"{run.run_dir}/data/report.json",
        "dataset_fingerprint": data.split.fingerprint,
        "drift": drift.report if isinstance(drift, DriftResult) else None,  # what changed since the champion's data
        "timings": {name: record.seconds for name, record in stages.items()},
        "skipped": [name for name, record in stages.items() if record.skipped],
    }


def unchanged_summary(run: RunContext, config: PipelineConfig, stages: dict[str, StageRecord]) -> dict[str, Any]:
    """The summary of a run that ended as a no-op: nothing changed since the last successful run."""
    change = stages["check_changes"]
    assert isinstance(change, ChangeCheck)
    return {
        "mlflow_run_id": run.mlflow_run_id,
        "experiment": run.experiment,
        "outcome": "skipped: unchanged",
        "reason": change.reason,
        "run_name": run.run_name,
        "run_dir": run.run_dir,
        "registered_model": config.registered_model_name,
        "model_version": None,
        "promoted": False,
        "promotion_reason": f"no new version: {change.reason}",
        "promotion_reasons": [],
        "aliases": {},
        "metrics": {},
        "data": {},
        "timings": {name: record.seconds for name, record in stages.items()},
        "skipped": PIPELINE_AFTER_CHECK,
    }


def sweep_summary(run: RunContext, data: PreparedData, searched: SearchResult, best_config: str) -> dict[str, Any]:
    """The summary of a sweep: every trial, the best one and where its config was written."""
    best = searched.best
    return {
        "mlflow_run_id": run.mlflow_run_id,
        "experiment": run.experiment,
        "outcome": f"sweep of {len(searched.trials)} trials: best trial {best.number}, eval loss {best.loss:.4f}",
        "run_name": run.run_name,
        "run_dir": run.run_dir,
        "data": data.report["counts"],
        "trials": [trial.model_dump(mode="json") for trial in searched.trials],
        "best": best.model_dump(mode="json"),
        "best_config": best_config,
        "timings": {**{name: record.seconds for name, record in data.stages().items()}, "search": searched.seconds},
    }
