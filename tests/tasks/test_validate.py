"""Validation: a great-expectations suite per input format gates the data; each failure is a sentence with the
measured numbers, the limit, the failing rows as file:line and what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterflow.core.errors import DataError
from schemas.data import ValidationConfig
from tasks.validate import gate_message, validate_rows
from tests.tasks.helpers import chat, filtered


def rows(tmp_path: Path, count: int = 12, source: str = "s"):
    return filtered(tmp_path, [chat(f"q{i}", f"answer {i}", i + 1, source) for i in range(count)])


def test_builtin_suite_passes_and_writes_report_and_docs(tmp_path: Path) -> None:
    result = validate_rows(rows(tmp_path), ValidationConfig(min_rows=10), {"s": "alpaca"}, tmp_path / "validation")
    assert result.success and result.failed == []
    assert Path(result.report_path).is_file() and (Path(result.docs_path) / "index.html").is_file()


def test_failures_say_what_was_measured_the_limit_the_rows_and_the_setting(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("expectations:\n"
                     "  - type: expect_column_values_to_be_between\n    kwargs: {column: response_chars, max_value: 8}\n"
                     "  - type: expect_column_mean_to_be_between\n    kwargs: {column: response_chars, max_value: 5}\n"
                     "    meta: {fix: shorten the answers}\n")
    result = validate_rows(rows(tmp_path, 12), ValidationConfig(suite=suite, min_rows=20), {"s": "alpaca"}, tmp_path / "v")
    assert not result.success and len(result.failed) == 3
    # answers "answer 0" .. "answer 9" have 8 characters, "answer 10" and "answer 11" 9
    assert (f"2 of 12 alpaca rows (16.7%) have response_chars above 8 (found 9; none allowed), e.g. s:11, s:12: "
            f"fix these rows, or change this expectation in data.validation.suite ({suite}) "
            "[alpaca: expect_column_values_to_be_between(response_chars)]") in result.failed
    # an aggregate names the rows beyond its limit, largest first, and the fix its meta declares
    assert ("the mean of response_chars is 8.17 (limit 5), e.g. s:11, s:12, s:1, s:2, s:3 (+7 more): "
            "shorten the answers [alpaca: expect_column_mean_to_be_between(response_chars)]") in result.failed
    assert ("12 rows are left after clean, PII and dedup drops (limit: at least 20): add data, or lower "
            "data.validation.min_rows [all formats: expect_table_row_count_to_be_between]") in result.failed
    message = gate_message(result)
    assert message.startswith(f"data validation failed: 3 of {result.evaluated} expectations\n  - ")


def test_chat_suite_requires_turns_to_alternate(tmp_path: Path) -> None:
    good = [chat(f"q{i}", f"a{i}", i + 1) for i in range(10)]
    bad = {"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"},
                        {"role": "assistant", "content": "z"}], "source": "s", "line": 11}
    result = validate_rows(filtered(tmp_path, [*good, bad]), ValidationConfig(), {"s": "chat"}, tmp_path / "v")
    assert result.failed == [("1 of 11 chat rows (9.1%) don't alternate user and assistant turns (none allowed), e.g. "
                             "s:11: turns go user, assistant, user, ... after an optional system message: fix the turns "
                             "of these rows [chat: expect_column_values_to_be_in_set(alternating)]")]


def test_each_format_gets_its_own_suite(tmp_path: Path) -> None:
    data = [chat(f"q{i}", f"a{i}", i + 1, "a.jsonl") for i in range(6)]
    data += [{"messages": [{"role": "system", "content": "s"}, *chat(f"p{i}", f"c{i}", i + 1, "b.jsonl")["messages"]],
              "source": "b.jsonl", "line": i + 1} for i in range(6)]
    result = validate_rows(filtered(tmp_path, data), ValidationConfig(), {"a.jsonl": "alpaca", "b.jsonl": "prompt_completion"},
                           tmp_path / "v")
    assert result.failed == [("6 of 6 prompt_completion rows (100.0%) have n_messages other than 2 (found 3; none "
                             "allowed), e.g. b.jsonl:1, b.jsonl:2, b.jsonl:3, b.jsonl:4, b.jsonl:5 (+1 more): fix these "
                             "rows in their file, or check that data.sources[].format (prompt_completion) is the format "
                             "they are in [prompt_completion: expect_column_values_to_be_between(n_messages)]")]


def test_text_and_classification_suites(tmp_path: Path) -> None:
    texts = [{"text": f"plain text number {i}", "source": "t", "line": i + 1} for i in range(10)]
    texts.append({"text": "\x00\x01\x02\x03 junk", "source": "t", "line": 11})
    result = validate_rows(filtered(tmp_path / "t", texts, "pretrain"), ValidationConfig(), {"t": "text"}, tmp_path / "v1")
    assert result.failed == [("1 of 11 text rows (9.1%) have printable_share below 0.95 (found 0.556; none allowed), "
                             "e.g. t:11: they look like binary or mis-encoded text: re-export them as UTF-8 or remove "
                             "them [text: expect_column_values_to_be_between(printable_share)]")]
    labelled = [{"text": f"review {i}", "label": "good" if i % 2 else "bad", "source": "c", "line": i + 1} for i in range(10)]
    labelled.append({"text": "lonely", "label": "meh", "source": "c", "line": 11})
    result = validate_rows(filtered(tmp_path / "c", labelled, "classification"), ValidationConfig(), {"c": "classification"},
                           tmp_path / "v2")
    assert result.failed == [("1 of 11 classification rows (9.1%) have a label no other row has (none allowed), e.g. "
                             "c:11: a class needs rows for train and eval: add rows of these labels "
                             "[classification: expect_column_values_to_be_between(label_rows)]")]


def test_unknown_expectation_types_are_refused_not_dropped(tmp_path: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("expectations:\n  - type: expect_rows_to_be_lovely\n    kwargs: {}\n")
    with pytest.raises(DataError, match="expect_rows_to_be_lovely"):
        validate_rows(rows(tmp_path), ValidationConfig(suite=suite), {"s": "alpaca"}, tmp_path / "v")
