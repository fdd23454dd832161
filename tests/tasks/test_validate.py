"""Validation: a great-expectations suite per input format gates the data and points at the failing rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterflow.errors import DataError
from schemas.data import ValidationConfig
from tasks.validate import validate_rows
from tests.tasks.helpers import chat, filtered


def rows(tmp_path: Path, count: int = 12, source: str = "s"):
    return filtered(tmp_path, [chat(f"q{i}", f"answer {i}", i + 1, source) for i in range(count)])


def test_builtin_suite_passes_and_writes_report_and_docs(tmp_path: Path) -> None:
    result = validate_rows(rows(tmp_path), ValidationConfig(min_rows=10), {"s": "alpaca"}, tmp_path / "validation")
    assert result.success and result.failed == []
    assert Path(result.report_path).is_file() and (Path(result.docs_path) / "index.html").is_file()


def test_failures_name_the_suite_expectation_and_rows(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("expectations:\n  - type: expect_column_values_to_be_between\n"
                     "    kwargs: {column: response_chars, max_value: 8}\n")
    result = validate_rows(rows(tmp_path, 12), ValidationConfig(suite=suite, min_rows=20), {"s": "alpaca"}, tmp_path / "v")
    assert not result.success and len(result.failed) == 2
    assert "[alpaca] expect_column_values_to_be_between(response_chars): 2 unexpected at s:11, s:12" in result.failed
    assert any("min_rows is 20" in line and "observed 12" in line for line in result.failed)


def test_chat_suite_requires_turns_to_alternate(tmp_path: Path) -> None:
    good = [chat(f"q{i}", f"a{i}", i + 1) for i in range(10)]
    bad = {"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"},
                        {"role": "assistant", "content": "z"}], "source": "s", "line": 11}
    result = validate_rows(filtered(tmp_path, [*good, bad]), ValidationConfig(), {"s": "chat"}, tmp_path / "v")
    assert result.failed == ["[chat] expect_column_values_to_be_in_set(alternating): 1 unexpected at s:11"]


def test_each_format_gets_its_own_suite(tmp_path: Path) -> None:
    data = [chat(f"q{i}", f"a{i}", i + 1, "a.jsonl") for i in range(6)]
    data += [{"messages": [{"role": "system", "content": "s"}, *chat(f"p{i}", f"c{i}", i + 1, "b.jsonl")["messages"]],
              "source": "b.jsonl", "line": i + 1} for i in range(6)]
    result = validate_rows(filtered(tmp_path, data), ValidationConfig(), {"a.jsonl": "alpaca", "b.jsonl": "prompt_completion"},
                           tmp_path / "v")
    assert result.failed == ["[prompt_completion] expect_column_values_to_be_between(n_messages): 6 unexpected at "
                             "b.jsonl:1, b.jsonl:2, b.jsonl:3, b.jsonl:4, b.jsonl:5, b.jsonl:6"]


def test_text_and_classification_suites(tmp_path: Path) -> None:
    texts = [{"text": f"plain text number {i}", "source": "t", "line": i + 1} for i in range(10)]
    texts.append({"text": "\x00\x01\x02\x03 junk", "source": "t", "line": 11})
    result = validate_rows(filtered(tmp_path / "t", texts, "pretrain"), ValidationConfig(), {"t": "text"}, tmp_path / "v1")
    assert result.failed == ["[text] expect_column_values_to_be_between(printable_share): 1 unexpected at t:11"]
    labelled = [{"text": f"review {i}", "label": "good" if i % 2 else "bad", "source": "c", "line": i + 1} for i in range(10)]
    labelled.append({"text": "lonely", "label": "meh", "source": "c", "line": 11})
    result = validate_rows(filtered(tmp_path / "c", labelled, "classification"), ValidationConfig(), {"c": "classification"},
                           tmp_path / "v2")
    assert result.failed == ["[classification] expect_column_values_to_be_between(label_rows): 1 unexpected at c:11"]


def test_unknown_expectation_types_are_refused_not_dropped(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("expectations:\n  - type: expect_rows_to_be_lovely\n    kwargs: {}\n")
    with pytest.raises(DataError, match="expect_rows_to_be_lovely"):
        validate_rows(rows(tmp_path), ValidationConfig(suite=suite), {"s": "alpaca"}, tmp_path / "v")
