"""Clean: Unicode and whitespace normalisation, then length bounds; every drop is counted by reason."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any


from adapterflow.data.tables import TableWriter, iter_rows, prompt_and_response
from adapterflow.records import FilterResult, IngestResult, RunContext
from adapterflow.stage import stage, stage_logger
from adapterflow.tracking import RunTracker
from schemas.data import CleanConfig

TRAILING_SPACE = re.compile(r"[ \t]+\n")
EXTRA_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str, unicode_form: str) -> str:
    """Canonical Unicode, Unix newlines, no trailing spaces, at most one blank line in a row.

    Indentation inside lines is kept: code in prompts and answers depends on it.
    """
    if unicode_form != "none":
        text = unicodedata.normalize(unicode_form, text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = TRAILING_SPACE.sub("\n", text)
    return EXTRA_BLANK_LINES.sub("\n\n", text).strip()


def normalize_row(row: dict[str, Any], unicode_form: str) -> dict[str, Any]:
    if "messages" in row:
        messages = [{"role": m["role"], "content": normalize_text(m["content"], unicode_form)} for m in row["messages"]]
        return {**row, "messages": messages}
    return {**row, "text": normalize_text(row["text"], unicode_form)}


def length_problem(row: dict[str, Any], config: CleanConfig) -> str | None:
    """Why a normalised row falls outside the configured bounds, or None when it is kept."""
    prompt, response = prompt_and_response(row)
    has_prompt = "messages" in row or "label" in row
    if has_prompt and len(prompt) < config.min_prompt_chars:
        return "prompt_too_short"
    if len(prompt) > config.max_prompt_chars:
        return "prompt_too_long"
    if len(response) < config.min_response_chars:
        return "response_too_short"
    if len(response) > config.max_response_chars:
        return "response_too_long"
    return None


def clean_table(ingested: IngestResult, config: CleanConfig, out_path: Path) -> FilterResult:
    """Normalise every row and drop those outside the length bounds."""
    dropped: Counter[str] = Counter()
    with TableWriter(out_path, ingested.table.task) as writer:
        for row in iter_rows(ingested.table):
            row = normalize_row(row, config.unicode_form)
            if problem := length_problem(row, config):
                dropped[f"clean.{problem}"] += 1
            else:
                writer.write(row)
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
