"""Clean: Unicode and whitespace normalisation, then length bounds; every drop is counted by reason."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from adapterflow.core.logs import stage_logger
from adapterflow.data.tables import TableWriter, iter_batches
from adapterflow.data.text import map_message_contents, normalize_strings, prompts_and_responses
from adapterflow.orchestration.stage import stage
from adapterflow.storage.records import FilterResult, IngestResult, RunContext
from adapterflow.tracking.run import RunTracker
from schemas.data import CleanConfig


def normalize_batch(batch: pa.RecordBatch, unicode_form: str) -> pa.RecordBatch:
    """Normalise every message (or text) of a batch; labels and provenance are left alone."""
    columns = dict(zip(batch.schema.names, batch.columns, strict=True))
    if "messages" in columns:
        columns["messages"] = map_message_contents(columns["messages"], lambda values: normalize_strings(values, unicode_form))
    else:
        columns["text"] = normalize_strings(columns["text"], unicode_form)
    return pa.RecordBatch.from_arrays(list(columns.values()), names=list(columns))


def length_problems(batch: pa.RecordBatch, config: CleanConfig) -> np.ndarray:
    """Per row, the first length bound it breaks ("" when it is kept)."""
    prompts, responses = prompts_and_responses(batch)
    prompt_chars = pc.utf8_length(prompts).to_numpy(zero_copy_only=False)
    response_chars = pc.utf8_length(responses).to_numpy(zero_copy_only=False)
    has_prompt = "messages" in batch.schema.names or "label" in batch.schema.names
    checks = [
        ("prompt_too_short", has_prompt & (prompt_chars < config.min_prompt_chars)),
        ("prompt_too_long", prompt_chars > config.max_prompt_chars),
        ("response_too_short", response_chars < config.min_response_chars),
        ("response_too_long", response_chars > config.max_response_chars),
    ]
    problems = np.full(batch.num_rows, "", dtype=object)
    for reason, broken in reversed(checks):  # the first check that fails names the reason
        problems[broken] = reason
    return problems


def clean_table(ingested: IngestResult, config: CleanConfig, out_path: Path) -> FilterResult:
    """Normalise every row and drop those outside the length bounds."""
    dropped: Counter[str] = Counter()
    with TableWriter(out_path, ingested.table.task) as writer:
        for batch in iter_batches(ingested.table):
            batch = normalize_batch(batch, config.unicode_form)
            problems = length_problems(batch, config)
            for reason, count in zip(*np.unique(problems[problems != ""], return_counts=True), strict=True):
                dropped[f"clean.{reason}"] += int(count)
            writer.write_batch(batch.filter(pa.array(problems == "")))
        table = writer.close()
    return FilterResult(table=table, dropped=dict(dropped))


@stage("clean", retries=2)
def clean(ingested: IngestResult, config: CleanConfig, run: RunContext) -> FilterResult:
    """Normalise and bound the ingested rows; log how many each bound dropped."""
    result = clean_table(ingested, config, Path(run.run_dir) / "data" / "clean.parquet")
    RunTracker(run.mlflow_run_id).log_metrics(
        {"data/clean_rows": result.table.rows, **{f"data/dropped/{k}": v for k, v in result.dropped.items()}}
    )
    stage_logger().info("clean kept %d rows, dropped %s", result.table.rows, result.dropped or "none")
    return result
