"""Ingest: canonical rows out, every unusable row quarantined, mixed tasks refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterflow.core.errors import DataError
from adapterflow.core.home import Home
from adapterflow.data.tables import iter_rows
from schemas.data import FileSource, PythonDocsSource
from tasks.ingest import check_quarantine_share, ingest_sources
from tests.conftest import ASSETS


def test_sources_of_several_chat_formats_become_one_table(tmp_path: Path) -> None:
    sources = [FileSource(path=ASSETS / "alpaca.jsonl"), FileSource(path=ASSETS / "chat.jsonl")]
    result = ingest_sources(sources, Home(tmp_path), tmp_path / "out")
    assert result.input_rows == 60 and result.table.rows == 60 and result.quarantined == 0
    assert set(result.formats.values()) == {"alpaca", "chat"}
    rows = list(iter_rows(result.table))
    assert rows[0]["line"] == 1 and rows[0]["source"].endswith("alpaca.jsonl")
    assert rows[-1]["messages"][0]["role"] == "system"


def test_quarantine_counts_and_share(tmp_path: Path) -> None:
    result = ingest_sources([FileSource(path=ASSETS / "malformed.jsonl")], Home(tmp_path), tmp_path / "out")
    assert (result.input_rows, result.quarantined, result.table.rows) == (36, 5, 31)
    assert result.quarantine_share == pytest.approx(5 / 36)
    check_quarantine_share(result, 0.2)
    with pytest.raises(DataError) as failure:
        check_quarantine_share(result, 0.1)
    message = str(failure.value)
    assert message.startswith("5 of 36 input rows (13.9%) are malformed (limit 10%): 1 invalid_json, 1 empty_line")
    assert f"e.g. {ASSETS / 'malformed.jsonl'}:4 (invalid JSON" in message and "malformed.jsonl:8 (empty line)" in message
    assert "raise data.max_quarantine_share" in message


def test_mixing_chat_and_raw_text_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "text.jsonl"
    text.write_text('{"text": "plain prose"}\n')
    with pytest.raises(DataError, match="mix formats"):
        ingest_sources([FileSource(path=ASSETS / "alpaca.jsonl"), FileSource(path=text)], Home(tmp_path), tmp_path)


def test_unrecognised_format_asks_for_an_explicit_one(tmp_path: Path) -> None:
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(DataError, match="can't recognise"):
        ingest_sources([FileSource(path=odd)], Home(tmp_path), tmp_path)


def test_builtin_source_is_written_once_and_read_like_a_file(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    source = PythonDocsSource(type="python_docs", max_examples=30)
    first = ingest_sources([source], home, tmp_path / "a")
    second = ingest_sources([source], home, tmp_path / "b")
    assert first.input_rows == second.input_rows == 30
    assert len(list((home.cache / "sources").iterdir())) == 1
