"""Clean (normalisation, bounds) and exact dedup."""

from __future__ import annotations

from pathlib import Path

from adapterflow.data.tables import TableWriter, iter_rows
from adapterflow.records import FilterResult, IngestResult
from schemas.data import CleanConfig, DedupConfig
from tasks.clean import clean_table, normalize_text
from tasks.dedup import dedup_exact


def chat(prompt: str, answer: str, line: int) -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            "source": "s", "line": line}


def table_of(tmp_path: Path, rows: list[dict]):
    with TableWriter(tmp_path / "in.parquet", "sft") as writer:
        for row in rows:
            writer.write(row)
        return writer.close()


def test_normalize_text_keeps_indentation() -> None:
    assert normalize_text("ﬁle\r\n  x = 1   \n\n\n\nend  ", "NFKC") == "file\n  x = 1\n\nend"
    assert normalize_text("ﬁ", "none") == "ﬁ"


def test_clean_drops_rows_outside_bounds_with_reasons(tmp_path: Path) -> None:
    rows = [chat("ok", "fine answer", 1), chat("ok", "   ", 2), chat("x" * 50, "fine", 3), chat("ok", "y" * 50, 4)]
    table = table_of(tmp_path, rows)
    ingested = IngestResult(table=table, input_rows=4, quarantined=0, quarantine_reasons={}, quarantine_path="",
                            formats={})
    result = clean_table(ingested, CleanConfig(max_prompt_chars=20, max_response_chars=20), tmp_path / "out.parquet")
    assert result.table.rows == 1
    assert result.dropped == {"clean.response_too_short": 1, "clean.prompt_too_long": 1, "clean.response_too_long": 1}


def test_exact_dedup_folds_case_and_whitespace_and_keeps_the_first(tmp_path: Path) -> None:
    rows = [chat("What is X?", "It is Y.", 1), chat("what  is x?", "it is y.", 2), chat("What is Z?", "It is Y.", 3)]
    cleaned = FilterResult(table=table_of(tmp_path, rows), dropped={})
    result = dedup_exact(cleaned, DedupConfig(), tmp_path / "out.parquet")
    assert [row["line"] for row in iter_rows(result.table)] == [1, 3]
    assert result.dropped == {"dedup.exact": 1}
    assert dedup_exact(cleaned, DedupConfig(exact=False), tmp_path / "all.parquet").table.rows == 3
