"""Ingest: read every source, convert rows to the canonical form, quarantine the rows that can't be."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import orjson

from adapterflow.core.errors import DataError
from adapterflow.core.hashing import cache_key
from adapterflow.core.home import Home
from adapterflow.core.logs import stage_logger
from adapterflow.data.formats import FORMAT_TASK, RowError, detect_format, to_canonical
from adapterflow.data.python_docs import as_format, build_python_docs, python_docs_version, write_jsonl
from adapterflow.data.readers import quarantine_record, read_rows
from adapterflow.data.tables import TableWriter
from adapterflow.orchestration.stage import stage
from adapterflow.storage.records import IngestResult, RunContext
from adapterflow.tracking.run import RunTracker
from schemas.data import DataConfig, DataSource, FileSource, PythonDocsSource

DETECTION_ROWS = 50  # rows looked at to detect a file's format


def source_file(source: DataSource, home: Home) -> tuple[Path, str]:
    """The file a source reads and its declared format; builtin sources are written to the cache first."""
    if isinstance(source, FileSource):
        return source.path, source.format
    assert isinstance(source, PythonDocsSource)
    key = cache_key(source.model_dump(), python_docs_version(source.package))
    path = home.cache_dir("sources", f"python_docs-{key}.jsonl")
    if not path.is_file():
        rows = build_python_docs(source.package, source.max_examples, source.include_topics, source.seed)
        write_jsonl(as_format(rows, source.format), path)
    return path, source.format


def detect_file_format(path: Path) -> str:
    """The format of the first recognisable rows of a file."""
    for index, row in enumerate(read_rows(path)):
        if index >= DETECTION_ROWS:
            break
        if isinstance(row.value, dict) and (found := detect_format(row.value)):
            return found
    raise DataError(
        f"{path}: can't recognise the data format from its first rows",
        hint="set format: alpaca | chat | prompt_completion | text | classification on this source "
        "(alpaca needs instruction/output, chat needs messages, prompt_completion needs prompt/completion)",
    )


def ingest_sources(sources: list[DataSource], home: Home, out_dir: Path) -> IngestResult:
    """Convert all sources into one canonical table; every unusable row goes to quarantine.jsonl."""
    files = [source_file(source, home) for source in sources]
    formats = {str(path): (fmt if fmt != "auto" else detect_file_format(path)) for path, fmt in files}
    tasks = {FORMAT_TASK[fmt] for fmt in formats.values()}
    if len(tasks) > 1:
        raise DataError(
            f"sources mix formats of different tasks: {formats}",
            hint="combine only chat-like formats (alpaca, chat, prompt_completion), or only text, or only classification",
        )
    task = tasks.pop()
    reasons: Counter[str] = Counter()
    input_rows = 0
    quarantine_path = out_dir / "quarantine.jsonl"
    out_dir.mkdir(parents=True, exist_ok=True)
    with TableWriter(out_dir / "ingested.parquet", task) as writer, open(quarantine_path, "wb") as quarantine:
        for path_text, fmt in formats.items():
            path = Path(path_text)
            for row in read_rows(path):
                input_rows += 1
                if row.error is None:
                    try:
                        canonical = to_canonical(row.value, fmt)
                    except RowError as exc:
                        row.error = RowError(exc.category, f"{exc} ({fmt} format)")
                    else:
                        writer.write({**canonical, "source": path_text, "line": row.number})
                        continue
                reasons[row.error.category] += 1
                quarantine.write(quarantine_record(path, row))
        table = writer.close()
    return IngestResult(
        table=table,
        input_rows=input_rows,
        quarantined=sum(reasons.values()),
        quarantine_reasons=dict(reasons),
        quarantine_path=str(quarantine_path),
        formats=formats,
    )


def check_quarantine_share(result: IngestResult, limit: float) -> None:
    """Fail when too many rows were malformed: a broken export should not quietly shrink the data."""
    if result.input_rows == 0:
        raise DataError(f"the data sources hold no rows: {', '.join(result.formats)}",
                        hint="check data.sources[].path, or the export that wrote these files")
    if result.table.rows == 0 or result.quarantine_share > limit:
        reasons = ", ".join(f"{count} {reason}" for reason, count in Counter(result.quarantine_reasons).most_common())
        examples = "; ".join(quarantine_examples(Path(result.quarantine_path)))
        raise DataError(
            f"{result.quarantined:,} of {result.input_rows:,} input rows ({result.quarantine_share:.1%}) are malformed "
            f"(limit {limit * 100:g}%): {reasons}" + (f"; e.g. {examples}" if examples else "")
            + ": fix those rows, or raise data.max_quarantine_share to train on the rest",
            hint=f"every malformed row is listed with its line and reason in {result.quarantine_path}",
        )


def quarantine_examples(path: Path, count: int = 3) -> list[str]:
    """The first quarantined rows as "file:line (reason)"."""
    examples = []
    with open(path, "rb") as quarantine:
        for line in itertools.islice(quarantine, count):
            record = orjson.loads(line)
            examples.append(f"{record['source']}:{record['line']} ({record['reason']})")
    return examples


@stage("ingest", retries=2)
def ingest(data: DataConfig, run: RunContext) -> IngestResult:
    """Read the configured sources into a canonical table and log the counts and the quarantine file (the
    MLflow copy redacted like the training rows: a malformed row never passed the redact stage)."""
    result = ingest_sources(data.sources, Home(Path(run.home)), Path(run.run_dir) / "data")
    tracker = RunTracker.for_run(run)
    tracker.log_metrics({"data/input_rows": result.input_rows, "data/quarantined": result.quarantined})
    tracker.log_artifact(result.quarantine_path, "data")
    stage_logger().info(
        "ingested %d rows from %d source(s), quarantined %d %s",
        result.input_rows, len(result.formats), result.quarantined, result.quarantine_reasons or "",
    )
    check_quarantine_share(result, data.max_quarantine_share)
    return result
