"""Validation: the great-expectations suite gates the data and points at the failing rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterflow.errors import DataError
from adapterflow.records import FilterResult
from schemas.data import ValidationConfig
from tasks.validate import validate_rows
from tests.tasks.test_clean_dedup import chat, table_of


def rows(tmp_path: Path, count: int = 12) -> FilterResult:
    return FilterResult(table=table_of(tmp_path, [chat(f"q{i}", f"answer {i}", i + 1) for i in range(count)]), dropped={})


def test_builtin_suite_passes_and_writes_report_and_docs(tmp_path: Path) -> None:
    result = validate_rows(rows(tmp_path), ValidationConfig(min_rows=10), tmp_path / "validation")
    assert result.success and result.failed == []
    assert result.evaluated == 6
    assert Path(result.report_path).is_file() and (Path(result.docs_path) / "index.html").is_file()


def test_failures_name_the_expectation_and_the_rows(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "expectations:\n"
        "  - type: expect_column_values_to_be_between\n"
        "    kwargs: {column: response_chars, max_value: 8}\n"
    )
    result = validate_rows(rows(tmp_path, 12), ValidationConfig(suite=suite, min_rows=20), tmp_path / "v")
    assert not result.success and len(result.failed) == 2
    by_type = {line.split("(")[0]: line for line in result.failed}
    assert "observed 12" in by_type["expect_table_row_count_to_be_between"]
    assert "2 unexpected at s:11, s:12" in by_type["expect_column_values_to_be_between"]


def test_unknown_expectation_types_are_refused_not_dropped(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("expectations:\n  - type: expect_rows_to_be_lovely\n    kwargs: {}\n")
    with pytest.raises(DataError, match="expect_rows_to_be_lovely"):
        validate_rows(rows(tmp_path), ValidationConfig(suite=suite), tmp_path / "v")
