"""Read user files row by row, keeping where each row came from.

`datasets.load_dataset("json")` loses line numbers and crashes or silently coerces on bad lines, so
user files are read here and only clean, canonical Parquet is handed on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from adapterflow.data.formats import RowError
from adapterflow.data.tables import open_parquet

PARQUET_BATCH_ROWS = 4096
READ_CHUNK_BYTES = 1 << 22


@dataclass
class RawRow:
    """One row as read: its location ("line 12", "row 3", "item 5"), the parsed value or the error."""

    location: str
    number: int
    value: Any = None
    error: RowError | None = None
    raw: str | None = None


def read_rows(path: Path) -> Iterator[RawRow]:
    """Yield every row of a JSONL, JSON-array or Parquet file; never raise for a bad row."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_rows(path)
    elif suffix == ".json" and _starts_with(path, b"["):
        yield from _json_array_rows(path)
    else:
        yield from _jsonl_rows(path)


def _starts_with(path: Path, prefix: bytes) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(prefix)


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, bytes) reading in chunks, so a huge file or line never needs a second copy."""
    number = 0
    pending = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK_BYTES):
            parts = (pending + chunk).split(b"\n")
            pending = parts.pop()
            for part in parts:
                number += 1
                yield number, part
    if pending:
        yield number + 1, pending


def _jsonl_rows(path: Path) -> Iterator[RawRow]:
    for number, line in _lines(path):
        location = f"line {number}"
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]  # a UTF-8 byte-order mark is an editor artefact, not data
        text = line.rstrip(b"\r")
        if not text.strip():
            yield RawRow(location, number, error=RowError("empty_line", "empty line"), raw="")
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            category, message = _json_problem(text, exc)
            yield RawRow(location, number, error=RowError(category, message), raw=_printable(text))
            continue
        yield RawRow(location, number, value=value, raw=None)


def _json_problem(text: bytes, exc: orjson.JSONDecodeError) -> tuple[str, str]:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as decode_error:
        return "invalid_utf8", f"invalid UTF-8 at byte {decode_error.start}"
    return "invalid_json", f"invalid JSON: {exc.msg} (char {exc.pos})"


def _printable(raw: bytes) -> str:
    # backslashreplace keeps undecodable bytes visible (\xff) instead of losing them
    return raw.decode("utf-8", errors="backslashreplace")


def _json_array_rows(path: Path) -> Iterator[RawRow]:
    raw = path.read_bytes()
    try:
        items = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        category, message = _json_problem(raw, exc)
        yield RawRow("file", 1, error=RowError(category, f"the JSON array can't be parsed: {message}"), raw=_printable(raw))
        return
    for index, item in enumerate(items, start=1):
        yield RawRow(f"item {index}", index, value=item)


def _parquet_rows(path: Path) -> Iterator[RawRow]:
    try:
        parquet = open_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        yield RawRow("file", 1, error=RowError("unreadable_file", f"not a readable Parquet file: {exc}"), raw="")
        return
    number = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        for value in batch.to_pylist():
            number += 1
            yield RawRow(f"row {number}", number, value=value)


def quarantine_record(source: Path, row: RawRow) -> bytes:
    """One quarantine line: where, why, and the row itself so nothing is lost."""
    assert row.error is not None
    raw = row.raw if row.raw is not None else orjson.dumps(row.value, default=str).decode()
    return orjson.dumps(
        {"source": str(source), "location": row.location, "line": row.number, "category": row.error.category,
         "reason": str(row.error), "raw": raw}
    ) + b"\n"
