"""Dedup: drop rows whose text repeats an earlier row once case and whitespace are folded."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


from adapterflow.data.tables import TableWriter, iter_rows, prompt_and_response
from adapterflow.records import FilterResult, RunContext
from adapterflow.stage import stage, stage_logger
from adapterflow.tracking import RunTracker
from schemas.data import DedupConfig


def fold(text: str) -> str:
    """Case- and whitespace-insensitive form used to compare texts."""
    return " ".join(text.lower().split())


def dedup_key(row: dict[str, Any]) -> bytes:
    """16-byte digest of the folded prompt and response: a set of a million keys is about 100 MB."""
    prompt, response = prompt_and_response(row)
    return hashlib.blake2b(f"{fold(prompt)}\x00{fold(response)}".encode(), digest_size=16).digest()


def dedup_exact(cleaned: FilterResult, config: DedupConfig, out_path: Path) -> FilterResult:
    """Keep the first occurrence of every distinct row."""
    seen: set[bytes] = set()
    duplicates = 0
    with TableWriter(out_path, cleaned.table.task) as writer:
        for row in iter_rows(cleaned.table):
            if config.exact:
                key = dedup_key(row)
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
            writer.write(row)
        table = writer.close()
    return FilterResult(table=table, dropped={"dedup.exact": duplicates} if duplicates else {})


@stage("dedup", retries=2)
def dedup(cleaned: FilterResult, config: DedupConfig, run: RunContext) -> FilterResult:
    """Remove duplicate rows and log how many there were."""
    result = dedup_exact(cleaned, config, Path(run.run_dir) / "data" / "dedup.parquet")
    duplicates = result.dropped.get("dedup.exact", 0)
    RunTracker(run.mlflow_run_id).log_metrics({"data/duplicates": duplicates, "data/dedup_rows": result.table.rows})
    stage_logger().info("dedup removed %d exact duplicates, %d rows left", duplicates, result.table.rows)
    return result
