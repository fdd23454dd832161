"""Line-numbered readers: every row is yielded with where it came from, bad rows with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from adapterflow.data.readers import quarantine_record, read_rows


def test_jsonl_rows_keep_line_numbers_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n{"a": \n{"b": 2}\n\xff\xfe\n{"c": 3}')
    rows = list(read_rows(path))
    assert [row.number for row in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0].value == {"a": 1}  # BOM and CRLF tolerated
    assert rows[1].error.category == "empty_line"
    assert rows[2].error.category == "invalid_json"
    assert rows[3].value == {"b": 2}
    assert rows[4].error.category == "invalid_utf8"
    assert rows[5].value == {"c": 3}  # last line without a newline


def test_quarantine_record_keeps_the_raw_bytes_visible(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\xff\xfe oops\n")
    (row,) = list(read_rows(path))
    record = json.loads(quarantine_record(path, row))
    assert record["line"] == 1 and record["raw"] == "\\xff\\xfe oops" and record["source"] == str(path)


def test_json_array_rows_are_numbered_by_item(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"a": 1}, {"a": 2}]))
    assert [(row.location, row.value) for row in read_rows(path)] == [("item 1", {"a": 1}), ("item 2", {"a": 2})]


def test_parquet_rows_are_numbered(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"text": ["x", "y", "z"]}), path)
    assert [(row.location, row.value["text"]) for row in read_rows(path)] == [("row 1", "x"), ("row 2", "y"), ("row 3", "z")]


def test_a_file_that_is_not_parquet_is_one_quarantined_row(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_text("not parquet")
    (row,) = list(read_rows(path))
    assert row.error.category == "unreadable_file"
