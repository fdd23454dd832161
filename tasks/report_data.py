"""Report data: one data report per run (JSON and a length histogram), logged to MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from adapterflow.data.report import build_report
from adapterflow.storage.records import (
    DedupResult,
    FilterResult,
    IngestResult,
    RedactResult,
    RunContext,
    SplitResult,
    TokenizedData,
    ValidationResult,
)
from adapterflow.storage.store import run_storage
from adapterflow.tracking.run import RunTracker


@task(name="report_data", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def report_data(
    ingested: IngestResult, cleaned: FilterResult, redacted: RedactResult, deduped: DedupResult,
    validated: ValidationResult, splits: SplitResult, tokenized: TokenizedData, token_checks: ValidationResult,
    run: RunContext,
) -> dict[str, Any]:
    """Write data/report.json and data/lengths.png (the max_length in effect marked) into the run folder and the
    MLflow run. The report quotes rows (duplicate clusters, leaked eval rows): it is redacted when written, so
    the run summary and the console show the redacted report too."""
    out_dir = Path(run.run_dir) / "data"
    report, plot = build_report(ingested, cleaned, redacted, deduped, validated, splits, tokenized,
                                run_storage(run).fetch(tokenized.uri), token_checks, out_dir)
    tracker = RunTracker.for_run(run)
    report = tracker.redactor.value(report)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    tracker.log_artifact(out_dir / "report.json", "data")
    tracker.log_artifact(plot, "data")
    counts = report["counts"]
    tracker.log_metrics({"data/near_duplicates": counts["near_duplicates"], "data/leaked_eval_rows": counts["leaked_eval_rows"],
                         "data/pii_rows": counts["pii"]["rows"]})
    return report
