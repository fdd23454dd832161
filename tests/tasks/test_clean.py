"""Clean: normalisation keeps indentation; bounds drop rows with a reason each."""

from __future__ import annotations

from pathlib import Path

from adapterflow.data.tables import iter_rows
from adapterflow.data.text import normalize_text
from adapterflow.storage.records import IngestResult
from schemas.data import CleanConfig
from tasks.clean import clean_table
from tests.tasks.helpers import chat, table_of


def test_normalize_text_keeps_indentation() -> None:
    assert normalize_text("ﬁle\r\n  x = 1   \n\n\n\nend  ", "NFKC") == "file\n  x = 1\n\nend"
    assert normalize_text("ﬁ", "none") == "ﬁ"
    assert normalize_text("Ｆｕｌｌ　width", "NFKC") == "Full width"


def test_clean_drops_rows_outside_bounds_with_reasons(tmp_path: Path) -> None:
    rows = [chat("ok", "fine answer", 1), chat("ok", "   ", 2), chat("x" * 50, "fine", 3), chat("ok", "y" * 50, 4),
            chat("ｆine\r\n", "ok  \n\n\n\nend", 5)]
    ingested = IngestResult(table=table_of(tmp_path, rows), input_rows=5, quarantined=0, quarantine_reasons={},
                            quarantine_path="", formats={})
    result = clean_table(ingested, CleanConfig(max_prompt_chars=20, max_response_chars=20), tmp_path / "out.parquet")
    assert result.table.rows == 2
    assert result.dropped == {"clean.response_too_short": 1, "clean.prompt_too_long": 1, "clean.response_too_long": 1}
    kept = list(iter_rows(result.table))
    assert [row["line"] for row in kept] == [1, 5]
    assert kept[1]["messages"] == [{"role": "user", "content": "fine"}, {"role": "assistant", "content": "ok\n\nend"}]


def test_clean_raw_text_rows(tmp_path: Path) -> None:
    rows = [{"text": "  some text  ", "source": "s", "line": 1}, {"text": "", "source": "s", "line": 2}]
    ingested = IngestResult(table=table_of(tmp_path, rows, "pretrain"), input_rows=2, quarantined=0,
                            quarantine_reasons={}, quarantine_path="", formats={})
    result = clean_table(ingested, CleanConfig(), tmp_path / "out.parquet")
    assert [row["text"] for row in iter_rows(result.table)] == ["some text"]
    assert result.dropped == {"clean.response_too_short": 1}
