"""The translator from a great-expectations result to a sentence: numbers, limit, rows and the fix."""

from __future__ import annotations

import pandas as pd

from adapterflow.data.expectations import aggregate_offenders, expectation_sentence


def test_a_share_expectation_reads_as_a_share_with_its_limit_rows_and_fix() -> None:
    item = {
        "expectation_type": "expect_column_mean_to_be_between", "success": False,
        "kwargs": {"batch_id": "b", "column": "truncated", "max_value": 0.2},
        "result": {"observed_value": 0.5633484162895928},
        "meta": {"rows": "examples", "what": "are longer than 512 tokens", "detail": "p95 1,210",
                 "fix": "set tokenize.max_length (or auto)"},
        "example_rows": ["a.jsonl:3", "a.jsonl:7"], "offending_rows": 2,
    }
    assert expectation_sentence(item, "tokens") == (
        "56.3% of examples are longer than 512 tokens (p95 1,210; limit 20%), e.g. a.jsonl:3, a.jsonl:7: "
        "set tokenize.max_length (or auto) [tokens: expect_column_mean_to_be_between(truncated)]"
    )


def test_a_row_expectation_counts_rows_shows_values_and_caps_the_row_list() -> None:
    unexpected = [{"source": "d.jsonl", "line": line, "n": 9} for line in range(10, 17)]
    item = {
        "expectation_type": "expect_column_values_to_be_between", "success": False,
        "kwargs": {"column": "n", "min_value": 1, "max_value": 8, "mostly": 0.95},
        "result": {"element_count": 1400, "unexpected_count": 7, "partial_unexpected_list": [9] * 7,
                   "unexpected_index_list": unexpected},
    }
    assert expectation_sentence(item) == (
        "7 of 1,400 rows (0.5%) have n outside 1-8 (found 9; at most 5% allowed), "
        "e.g. d.jsonl:10, d.jsonl:11, d.jsonl:12, d.jsonl:13, d.jsonl:14 (+2 more) "
        "[expect_column_values_to_be_between(n)]"
    )


def test_aggregate_offenders_are_the_rows_beyond_the_limit() -> None:
    frame = pd.DataFrame({"source": ["f"] * 6, "line": [1, 2, 3, 4, 5, 6],
                          "flag": [False, True, False, True, True, False], "n": [3, 9, 1, 12, 9, 2]})
    share = {"expectation_type": "expect_column_mean_to_be_between", "kwargs": {"column": "flag", "max_value": 0.2},
             "result": {"observed_value": 0.5}}
    assert aggregate_offenders(frame, share) == (["f:2", "f:4", "f:5"], 3)
    mean = {"expectation_type": "expect_column_mean_to_be_between", "kwargs": {"column": "n", "max_value": 5},
            "result": {"observed_value": 6.0}}
    assert aggregate_offenders(frame, mean) == (["f:4", "f:2", "f:5"], 3)
    low = {"expectation_type": "expect_column_mean_to_be_between", "kwargs": {"column": "n", "min_value": 7},
           "result": {"observed_value": 6.0}}
    assert aggregate_offenders(frame, low) == (["f:3", "f:6", "f:1"], 3)
    passing = {**mean, "result": {"observed_value": 4.0}}
    assert aggregate_offenders(frame, passing) == ([], 0)
