"""The run summary: one dict that the CLI prints, `--summary-json` writes and MLflow stores."""

from __future__ import annotations

from typing import Any

from adapterflow.records import PreparedData, RunContext, StageRecord


def build_summary(run: RunContext, data: PreparedData, stages: dict[str, StageRecord], method: str) -> dict[str, Any]:
    """The summary of a finished run from its data report and the records its stages returned."""
    trained, evaluation = stages["train"], stages["evaluate"]
    registered, promotion = stages["register"], stages["promote"]
    return {
        "mlflow_run_id": run.mlflow_run_id,
        "experiment": run.experiment,
        "run_name": run.run_name,
        "run_dir": run.run_dir,
        "registered_model": registered.model_name,
        "model_version": registered.version,
        "model_uri": registered.model_uri,
        "method": method,
        "task": data.tokenize.task,
        "promoted": promotion.promoted,
        "promotion_reason": promotion.reason,
        "aliases": promotion.aliases,
        "champion_compared": evaluation.champion_version,
        "metrics": evaluation.metrics,
        "training": trained.metrics,
        "data": data.report["counts"],
        "data_report": f"{run.run_dir}/data/report.json",
        "dataset_fingerprint": data.split.fingerprint,
        "timings": {name: record.seconds for name, record in stages.items()},
        "skipped": [name for name, record in stages.items() if record.skipped],
    }
