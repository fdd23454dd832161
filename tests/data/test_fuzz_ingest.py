"""Fuzzing ingest with broken input: nothing crashes, every bad line is quarantined with its line number
and a reason, every good line is kept, and the counts reconcile exactly."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapterflow.core.errors import DataError
from adapterflow.core.home import Home
from adapterflow.data.tables import iter_rows
from schemas.data import FileSource
from tasks.ingest import ingest_sources

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
valid_row = st.builds(lambda i, o: {"instruction": i, "output": o}, text, text)


@st.composite
def line(draw) -> tuple[bytes, bool]:
    """One JSONL line and whether ingest must keep it."""
    kind = draw(st.sampled_from(["valid", "truncated", "bad_utf8", "wrong_type", "missing", "empty", "not_object",
                                 "garbage", "extra_fields"]))
    row = draw(valid_row)
    encoded = orjson.dumps(row)
    if kind == "valid":
        return encoded, True
    if kind == "extra_fields":
        return orjson.dumps({**row, "meta": {"id": draw(st.integers(-(2**63), 2**63 - 1))}}), True
    if kind == "truncated":
        return encoded[: draw(st.integers(1, len(encoded) - 1))], False
    if kind == "bad_utf8":
        position = draw(st.integers(0, len(encoded)))
        return encoded[:position] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) + encoded[position:], False
    if kind == "wrong_type":
        field = draw(st.sampled_from(["instruction", "output"]))
        return orjson.dumps({**row, field: draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.lists(st.integers(0, 9)), st.booleans()))}), False
    if kind == "missing":
        return orjson.dumps({"instruction": row["instruction"]}), False
    if kind == "empty":
        return draw(st.sampled_from([b"", b"   ", b"\t", b"\r"])), False
    if kind == "not_object":
        return orjson.dumps(draw(st.one_of(st.integers(-(2**63), 2**63 - 1), st.lists(text, max_size=3), text))), False
    junk = draw(st.binary(min_size=1, max_size=60).filter(lambda b: b"\n" not in b))
    try:
        parsed = orjson.loads(junk)
    except orjson.JSONDecodeError:
        return junk, False
    return junk, isinstance(parsed, dict) and {"instruction", "output"} <= set(parsed) and all(
        isinstance(parsed[k], str) for k in ("instruction", "output"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line(), min_size=1, max_size=40), trailing_newline=st.booleans())
def test_every_line_is_kept_or_quarantined_with_its_number(tmp_path: Path, lines, trailing_newline: bool) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis reuses tmp_path across examples
    path = folder / "fuzz.jsonl"
    path.write_bytes(b"\n".join(raw for raw, _ in lines) + (b"\n" if trailing_newline else b""))
    if not trailing_newline and lines[-1][0] == b"":
        lines = lines[:-1]  # a file ending in an empty last line without newline has no such line
    if not lines:
        return
    result = ingest_sources([FileSource(path=path, format="alpaca")], Home(folder), folder / "out")

    expected_kept = [number for number, (_, good) in enumerate(lines, start=1) if good]
    expected_bad = [number for number, (_, good) in enumerate(lines, start=1) if not good]
    assert result.input_rows == len(lines)
    assert result.input_rows == result.table.rows + result.quarantined
    assert [row["line"] for row in iter_rows(result.table)] == expected_kept
    quarantined = [json.loads(item) for item in Path(result.quarantine_path).read_bytes().split(b"\n") if item]
    assert [item["line"] for item in quarantined] == expected_bad
    assert all(item["reason"] and item["category"] for item in quarantined)
    assert sum(result.quarantine_reasons.values()) == result.quarantined


def test_a_single_10_mb_line_and_its_neighbours(tmp_path: Path) -> None:
    huge = orjson.dumps({"instruction": "summarise", "output": "x" * 10_000_000})
    broken = b'{"instruction": "' + b"y" * 10_000_000  # 10 MB of unterminated JSON
    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"instruction": "a", "output": "b"}\n' + huge + b"\n" + broken + b"\n{}\n")
    result = ingest_sources([FileSource(path=path, format="alpaca")], Home(tmp_path), tmp_path / "out")
    assert (result.input_rows, result.table.rows, result.quarantined) == (4, 2, 2)
    assert result.quarantine_reasons == {"invalid_json": 1, "missing_field": 1}
    records = [json.loads(item) for item in Path(result.quarantine_path).read_bytes().split(b"\n") if item]
    assert [r["line"] for r in records] == [3, 4] and len(records[0]["raw"]) == len(broken)  # nothing lost


def test_a_file_that_is_not_json_at_all(tmp_path: Path) -> None:
    path = tmp_path / "picture.jsonl"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)))
    with pytest.raises(DataError, match="can't recognise the data format"):
        ingest_sources([FileSource(path=path)], Home(tmp_path), tmp_path / "out")
    result = ingest_sources([FileSource(path=path, format="alpaca")], Home(tmp_path), tmp_path / "out2")
    assert result.table.rows == 0 and result.quarantined == result.input_rows > 0
