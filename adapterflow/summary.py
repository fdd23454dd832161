"""The run summary: one dict that the CLI prints, `--summary-json` writes and MLflow stores."""

from __future__ import annotations

from typing import Any

from adapterflow.records import FilterResult, IngestResult, RunContext, SplitResult, StageRecord, TokenizedData


def data_counts(
    ingested: IngestResult, cleaned: FilterResult, deduped: FilterResult, splits: SplitResult, tokenized: TokenizedData
) -> dict[str, Any]:
    """Counts at every stage with each drop reason; `reconciled` checks that every input row is accounted for."""
    dropped = {**cleaned.dropped, **deduped.dropped, **tokenized.dropped}
    accounted = ingested.quarantined + sum(dropped.values()) + tokenized.train_rows + tokenized.eval_rows
    return {
        "input_rows": ingested.input_rows,
        "quarantined": ingested.quarantined,
        "quarantine_reasons": ingested.quarantine_reasons,
        "quarantine_file": ingested.quarantine_path,
        "dropped": dropped,
        "duplicates": deduped.dropped.get("dedup.exact", 0),
        "stages": {
            "ingested": ingested.table.rows,
            "clean": cleaned.table.rows,
            "dedup": deduped.table.rows,
            "split_train": splits.train.rows,
            "split_eval": splits.eval.rows,
        },
        "train_rows": tokenized.train_rows,
        "eval_rows": tokenized.eval_rows,
        "reconciled": accounted == ingested.input_rows,
    }


def build_summary(run: RunContext, stages: dict[str, StageRecord]) -> dict[str, Any]:
    """The summary of a finished run from the records its stages returned (keyed by stage name)."""
    ingested, deduped, splits = stages["ingest"], stages["dedup"], stages["split"]
    tokenized, trained, evaluation = stages["tokenize"], stages["train"], stages["evaluate"]
    registered, promotion = stages["register"], stages["promote"]
    return {
        "mlflow_run_id": run.mlflow_run_id,
        "experiment": run.experiment,
        "run_name": run.run_name,
        "run_dir": run.run_dir,
        "registered_model": registered.model_name,
        "model_version": registered.version,
        "model_uri": registered.model_uri,
        "promoted": promotion.promoted,
        "promotion_reason": promotion.reason,
        "aliases": promotion.aliases,
        "champion_compared": evaluation.champion_version,
        "metrics": evaluation.metrics,
        "training": trained.metrics,
        "data": data_counts(ingested, stages["clean"], deduped, splits, tokenized),
        "dataset_fingerprint": splits.fingerprint,
        "timings": {name: record.seconds for name, record in stages.items()},
        "skipped": [name for name, record in stages.items() if record.skipped],
    }
