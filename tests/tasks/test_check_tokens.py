"""Token checks: each example counts under one cause (over-long, nothing to learn, no end-of-turn), and a
failure reads as a sentence with the share, the limit, the rows and the config key."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adapterflow.core.errors import ValidationGateFailed
from adapterflow.core.home import Home
from adapterflow.storage.records import RunContext, TokenizedData
from adapterflow.tokenization.lengths import LengthChoice
from schemas.data import ValidationConfig
from tasks.check_tokens import check_token_stats, check_tokens
from tasks.tokenize import EXAMPLES_SCHEMA

FIXED_512 = LengthChoice(512, "fixed")


def example(line: int, length: int = 100, max_length: int = 512, end_of_turn: bool = True, label_tokens: int = 5,
            drop: bool = False) -> dict:
    """One example's statistics as tokenization records them: over-long ones are cut (or dropped) before the
    end-of-turn token."""
    overlong = length > max_length
    return {"source": "data/docs.jsonl", "line": line, "length": length, "tokens": min(length, max_length),
            "label_tokens": label_tokens, "overlong": overlong, "truncated": overlong and not drop,
            "end_of_turn": end_of_turn and not overlong, "kept": label_tokens > 0 and not (overlong and drop)}


def tokenized(folder: Path, train: list[dict], eval_rows: list[dict] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("eval", eval_rows or [])):
        pq.write_table(pa.Table.from_pylist(rows, schema=EXAMPLES_SCHEMA), folder / f"{name}_examples.parquet")
    return folder


def test_healthy_examples_pass(tmp_path: Path) -> None:
    data = tokenized(tmp_path / "t", [example(line) for line in range(10)])
    result = check_token_stats(data, ValidationConfig(), True, tmp_path, FIXED_512)
    assert result.success and result.evaluated == 3 and result.failed == []


def test_truncated_chat_examples_count_as_truncated_not_as_missing_end_of_turn(tmp_path: Path) -> None:
    """2% truncated (cut before their end-of-turn token) passes a 20% gate."""
    rows = [example(line, length=900 if line < 2 else 100) for line in range(100)]
    result = check_token_stats(tokenized(tmp_path / "t", rows), ValidationConfig(), True, tmp_path, FIXED_512)
    assert result.success, result.failed
    dropped = [example(line, length=900 if line < 2 else 100, drop=True) for line in range(100)]
    assert check_token_stats(tokenized(tmp_path / "d", dropped), ValidationConfig(), True, tmp_path, FIXED_512).success


def test_too_many_over_long_examples_fail_with_share_limit_rows_and_key(tmp_path: Path) -> None:
    rows = [example(line, length=50 + 100 * line) for line in range(1, 11)]  # 6 of 10 longer than 512
    result = check_token_stats(tokenized(tmp_path / "t", rows[:8], rows[8:]), ValidationConfig(), True, tmp_path,
                               FIXED_512)
    assert not result.success and len(result.failed) == 1  # not also failing end-of-turn or no-label
    message = result.failed[0]
    assert message.startswith("60% of examples (6 of 10) are longer than 512 tokens and were truncated")
    assert "limit 20%" in message and "longest 1,050" in message
    assert "data/docs.jsonl:10 (eval, 1,050 tokens), data/docs.jsonl:9 (eval, 950 tokens)" in message
    assert "and 3 more" in message
    assert "set tokenize.max_length: auto, or at least 1,005 (the p95)" in message and "data.validation.max_truncated_share" in message

    dropped = [example(line, length=50 + 100 * line, drop=True) for line in range(1, 11)]
    message = check_token_stats(tokenized(tmp_path / "d", dropped), ValidationConfig(), True, tmp_path, FIXED_512).failed[0]
    assert "were dropped (tokenize.overlong: drop)" in message

    capped = check_token_stats(tokenized(tmp_path / "t", rows[:8], rows[8:]), ValidationConfig(), True, tmp_path,
                               LengthChoice(512, "limit"))
    assert "raise tokenize.max_length_limit" in capped.failed[0]


def test_missing_end_of_turn_and_empty_labels_fail_with_their_own_sentences(tmp_path: Path) -> None:
    rows = ([example(1, label_tokens=0), example(2, label_tokens=0), example(3, end_of_turn=False)]
            + [example(line) for line in range(4, 11)])
    data = tokenized(tmp_path / "t", rows)
    result = check_token_stats(data, ValidationConfig(), True, tmp_path, FIXED_512)
    no_label, end_of_turn = result.failed
    assert no_label.startswith("20% of examples (2 of 10) have no response token to train on and were dropped")
    assert "limit 5%" in no_label and "data/docs.jsonl:1 (train, 100 tokens)" in no_label
    assert "data.validation.max_no_label_share" in no_label
    assert end_of_turn.startswith("1 of 8 examples that fit in 512 tokens (12.5%) don't train on the end-of-turn")
    assert "data/docs.jsonl:3" in end_of_turn and "tokenize.chat_template" in end_of_turn
    assert "data.validation.require_end_of_turn: false" in end_of_turn
    relaxed = ValidationConfig(max_no_label_share=0.5, require_end_of_turn=False)
    assert check_token_stats(data, relaxed, True, tmp_path, FIXED_512).success
    assert (tmp_path / "token_checks.json").exists()  # great-expectations' own report stays an artifact


def test_the_stage_stops_the_run_with_the_sentences(tmp_path: Path, home: Home) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = RunContext(run_name="r", run_dir=str(tmp_path), home=str(home.root),
                     mlflow_run_id=client.create_run(client.create_experiment("tokens")).info.run_id,
                     experiment="tokens", config_sha256="c", storage=str(home.cache))
    rows = [example(line, length=1210 if line <= 249 else 300) for line in range(1, 443)]  # 249 of 442 over
    tokenized(home.cache / "tokenized" / "k", rows)
    record = TokenizedData(key="k", uri=f"{home.cache}/tokenized/k", train_rows=442, eval_rows=0, dropped={}, stats={},
                           max_length=512, max_length_rule="fixed")
    with pytest.raises(ValidationGateFailed) as failure:
        check_tokens.fn(record, ValidationConfig(), True, run)
    message = str(failure.value)
    assert message.startswith("token checks failed (1 of 3):\n  - 56.3% of examples (249 of 442) are longer than 512 "
                              "tokens and were truncated (p95 1,210, longest 1,210; limit 20%)")
    assert "data/docs.jsonl:1 (train, 1,210 tokens)" in message and "tokenize.max_length: auto" in message
    assert "expect_column" not in message  # great-expectations' names stay in its report
