"""Token checks: truncation, unlearnable examples and the end-of-turn label, checked per example."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.data import ValidationConfig
from tasks.check_tokens import check_token_stats
from tasks.tokenize import EXAMPLES_SCHEMA


def tokenized(tmp_path: Path, truncated: list[bool], end_of_turn: list[bool], label_tokens: list[int]) -> Path:
    count = len(truncated)
    table = pa.table({"tokens": [10] * count, "label_tokens": label_tokens, "truncated": truncated,
                      "end_of_turn": end_of_turn}, schema=EXAMPLES_SCHEMA)
    for name in ("train", "eval"):
        pq.write_table(table, tmp_path / f"{name}_examples.parquet")
    return tmp_path


def test_healthy_examples_pass(tmp_path: Path) -> None:
    result = check_token_stats(tokenized(tmp_path, [False] * 10, [True] * 10, [5] * 10), ValidationConfig(), True, tmp_path)
    assert result.success and result.evaluated == 3


def test_missing_end_of_turn_truncation_and_empty_labels_fail(tmp_path: Path) -> None:
    data = tokenized(tmp_path, [True] * 3 + [False] * 7, [True, True, False] + [True] * 7, [0] * 2 + [5] * 8)
    result = check_token_stats(data, ValidationConfig(), True, tmp_path)
    joined = "\n".join(result.failed)
    assert "expect_column_mean_to_be_between(truncated)" in joined
    assert "expect_column_mean_to_be_between(no_label)" in joined
    assert "expect_column_values_to_be_in_set(end_of_turn)" in joined
    relaxed = ValidationConfig(max_truncated_share=0.5, max_no_label_share=0.5, require_end_of_turn=False)
    assert check_token_stats(data, relaxed, True, tmp_path).success
