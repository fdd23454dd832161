"""Canonical Parquet tables: their schemas, and chunked reading and writing so memory stays flat."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from adapterflow.storage.records import DataTable

CHUNK_ROWS = 8192
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
PROVENANCE = [("source", pa.string()), ("line", pa.int64())]
SCHEMAS = {
    "sft": pa.schema([("messages", pa.list_(MESSAGE)), *PROVENANCE]),
    "pretrain": pa.schema([("text", pa.string()), *PROVENANCE]),
    "classification": pa.schema([("text", pa.string()), ("label", pa.string()), *PROVENANCE]),
}


def open_parquet(path: str | Path) -> pq.ParquetFile:
    """A reader that streams: pre-buffering (the default) keeps every row group read so far in memory."""
    return pq.ParquetFile(path, pre_buffer=False)


class TableWriter:
    """Write canonical rows to Parquet in chunks; the file appears only when complete."""

    def __init__(self, path: Path, task: str, compression: str = "none") -> None:
        """`compression`: none for a run's intermediate tables (4x faster to write), zstd for cached ones."""
        self.path = path
        self.task = task
        self.schema = SCHEMAS[task]
        self.rows = 0
        self._pending: list[dict[str, Any]] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = path.with_name(path.name + ".partial")
        self._writer = pq.ParquetWriter(
            self._partial, self.schema, compression=compression, use_dictionary=["source", "label"]
        )

    def write(self, row: dict[str, Any]) -> None:
        self._pending.append(row)
        if len(self._pending) >= CHUNK_ROWS:
            self._flush()

    def write_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Write many rows at once (already in the table's schema)."""
        self._flush()
        if batch.num_rows:
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            self._writer.write_table(table.cast(self.schema))
            self.rows += batch.num_rows

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.Table.from_pylist(self._pending, schema=self.schema))
            self.rows += len(self._pending)
            self._pending = []

    def close(self) -> DataTable:
        self._flush()
        self._writer.close()
        self._partial.replace(self.path)
        return DataTable(path=str(self.path), rows=self.rows, task=self.task)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self._writer.close()
            self._partial.unlink(missing_ok=True)


def iter_batches(table: DataTable, batch_size: int = CHUNK_ROWS) -> Iterator[pa.RecordBatch]:
    """Record batches of a canonical table, one in memory at a time."""
    yield from open_parquet(table.path).iter_batches(batch_size=batch_size)


def iter_rows(table: DataTable, batch_size: int = CHUNK_ROWS) -> Iterator[dict[str, Any]]:
    """Rows of a canonical table, one chunk in memory at a time."""
    parquet = open_parquet(table.path)
    for batch in parquet.iter_batches(batch_size=batch_size):
        yield from batch.to_pylist()


def prompt_and_response(row: dict[str, Any]) -> tuple[str, str]:
    """The text a row conditions on and the text it teaches, for any canonical task."""
    if "messages" in row:
        prompt = "\n".join(m["content"] for m in row["messages"] if m["role"] != "assistant")
        response = "\n".join(m["content"] for m in row["messages"] if m["role"] == "assistant")
        return prompt, response
    if "label" in row:
        return row["text"], row["label"]
    return "", row["text"]  # continued pre-training learns the whole text
