"""Redact: find personal data (emails, phones, cards, IBANs, IPs, national IDs, custom patterns) and
redact it with typed placeholders, drop the rows, or only count it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

from adapterflow.core.logs import stage_logger
from adapterflow.data.pii import PiiScanner
from adapterflow.data.tables import TableWriter, iter_batches
from adapterflow.data.text import flat_messages
from adapterflow.orchestration.stage import stage
from adapterflow.storage.records import FilterResult, RedactResult, RunContext
from adapterflow.tracking.run import RunTracker
from schemas.data import PiiConfig


def scan_texts(scanner: PiiScanner, texts: list[str], redact: bool) -> tuple[list[str], np.ndarray, Counter[str]]:
    """Each text (redacted if asked), whether it had any finding, and counts by entity."""
    out, flagged, counts = [], np.zeros(len(texts), bool), Counter()
    for index, text in enumerate(texts):
        cleaned, found = scanner.redact(text) if redact else (text, Counter(f.entity for f in scanner.find(text)))
        out.append(cleaned)
        flagged[index] = bool(found)
        counts.update(found)
    return out, flagged, counts


def redact_batch(batch: pa.RecordBatch, scanner: PiiScanner, action: str) -> tuple[pa.RecordBatch, np.ndarray, Counter[str]]:
    """The batch after the action, a per-row flag of personal data, and counts by entity."""
    columns = dict(zip(batch.schema.names, batch.columns, strict=True))
    redact = action == "redact"
    if "messages" in columns:
        offsets, structs = flat_messages(columns["messages"])
        texts, flagged, counts = scan_texts(scanner, structs.field("content").to_pylist(), redact)
        rows = np.repeat(np.arange(batch.num_rows), np.diff(offsets))
        row_flags = np.bincount(rows[flagged], minlength=batch.num_rows) > 0
        if redact:
            contents = pa.array(texts, pa.string())
            rebuilt = pa.StructArray.from_arrays([structs.field("role"), contents], names=["role", "content"])
            columns["messages"] = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), rebuilt)
    else:
        texts, row_flags, counts = scan_texts(scanner, columns["text"].to_pylist(), redact)
        if redact:
            columns["text"] = pa.array(texts, pa.string())
    out = pa.RecordBatch.from_arrays(list(columns.values()), names=list(columns))
    if action == "drop":
        out = out.filter(pa.array(~row_flags))
    return out, row_flags, counts


def redact_rows(rows: FilterResult, config: PiiConfig, out_path: Path) -> RedactResult:
    """Apply the PII action to every row; counts by type go into the result, values nowhere."""
    if config.action == "off":
        return RedactResult(table=rows.table, dropped={}, action="off")
    scanner = PiiScanner(config)
    counts: Counter[str] = Counter()
    with_pii = 0
    with TableWriter(out_path, rows.table.task) as writer:
        for batch in iter_batches(rows.table):
            out, flags, found = redact_batch(batch, scanner, config.action)
            counts.update(found)
            with_pii += int(flags.sum())
            writer.write_batch(out)
        table = writer.close()
    dropped = {"pii.dropped": with_pii} if config.action == "drop" and with_pii else {}
    return RedactResult(table=table, dropped=dropped, found=dict(counts), rows_with_pii=with_pii, action=config.action)


@stage("redact", retries=2)
def redact(rows: FilterResult, config: PiiConfig, run: RunContext) -> RedactResult:
    """Find personal data and apply the configured action; log counts by type (never the values)."""
    result = redact_rows(rows, config, Path(run.run_dir) / "data" / "redacted.parquet")
    RunTracker(run.mlflow_run_id).log_metrics(
        {f"data/pii/{entity}": count for entity, count in result.found.items()} | {"data/pii_rows": result.rows_with_pii}
    )
    stage_logger().info("PII (%s): %d rows with findings %s", result.action, result.rows_with_pii, result.found or "")
    return result
