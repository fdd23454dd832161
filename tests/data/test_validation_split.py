"""The validation split: carved from train by prompt hash, stable while data grows, leakage-checked like eval,
and absent (with the reason) when the data is too small for three sides."""

from __future__ import annotations

from pathlib import Path

from adapterflow.data.splitting import split_rows
from adapterflow.data.tables import iter_rows
from adapterflow.data.validation_split import carve_validation, too_small_note, validation_rows_wanted
from adapterflow.storage.store import Storage
from schemas.data import LeakageConfig, SplitConfig
from tests.tasks.helpers import chat, filtered, questions, table_of

NO_LEAK_CHECK = LeakageConfig(enabled=False)


def prompts(table) -> set[str]:
    return {row["messages"][0]["content"] for row in iter_rows(table)}


def test_validation_comes_from_train_and_shares_no_prompt_with_another_side(tmp_path: Path) -> None:
    rows = questions(300)
    rows += [chat(row["messages"][0]["content"], "a second answer", 1000 + i) for i, row in enumerate(rows[:40])]
    config = SplitConfig(eval_size=0.1, max_eval_rows=None, validation_size=0.1, max_validation_rows=None)
    result = split_rows(filtered(tmp_path / "a", rows), config, NO_LEAK_CHECK, Storage.local(tmp_path / "store"), 1)
    assert result.train.rows + result.eval.rows + result.validation.rows == 340
    assert 28 <= result.validation.rows <= 34  # 10% of the ~306 training rows, give or take a shared prompt
    sides = [prompts(result.train), prompts(result.eval), prompts(result.validation)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    again = split_rows(filtered(tmp_path / "b", rows), config, NO_LEAK_CHECK, Storage.local(tmp_path / "store"), 2)
    assert again.fingerprint == result.fingerprint and prompts(again.validation) == sides[2]


def test_rows_keep_their_validation_side_when_data_grows(tmp_path: Path) -> None:
    config = SplitConfig(eval_size=20, max_eval_rows=None, validation_size=0.1, max_validation_rows=None)
    small = split_rows(filtered(tmp_path / "a", questions(400)), config, NO_LEAK_CHECK,
                       Storage.local(tmp_path / "store"), 1)
    grown = split_rows(filtered(tmp_path / "b", questions(440)), config, NO_LEAK_CHECK,
                       Storage.local(tmp_path / "store"), 1)
    # validation takes the training rows of highest hash: growing by 10% moves its threshold by a few rows
    assert small.validation.rows == 38 and len(prompts(small.validation) - prompts(grown.validation)) <= 5


def test_the_cap_and_a_count_size_the_validation_split() -> None:
    assert validation_rows_wanted(10_000, SplitConfig()) == 64  # 5% would be 500: max_validation_rows caps it
    assert validation_rows_wanted(100, SplitConfig()) == 5
    assert validation_rows_wanted(100, SplitConfig(validation_size=12)) == 12


def test_validation_rows_that_repeat_a_training_example_are_removed(tmp_path: Path) -> None:
    rows = questions(60)
    # 20 near copies of training examples (a reworded question, the same answer), placed where validation looks
    rows += [chat(row["messages"][0]["content"] + " Please.", row["messages"][1]["content"], 500 + i)
             for i, row in enumerate(rows[:20])]
    train = table_of(tmp_path / "t", rows, name="train.parquet")
    config = SplitConfig(validation_size=0.5, max_validation_rows=None)
    checked = carve_validation(train, config, LeakageConfig(), tmp_path / "t", 1)
    leaked = checked.dropped.get("split.validation_leak_exact", 0) + checked.dropped.get("split.validation_leak_near", 0)
    assert leaked > 0
    assert checked.train.rows + checked.validation.rows + leaked == 80
    train_answers = {row["messages"][1]["content"] for row in iter_rows(checked.train)}
    kept_copies = [row for row in iter_rows(checked.validation) if row["line"] >= 500]
    assert not [row for row in kept_copies if row["messages"][1]["content"] in train_answers]


def test_too_small_data_has_no_validation_split_and_says_why(tmp_path: Path) -> None:
    note = too_small_note(100, 5, SplitConfig())
    assert note == ("100 training rows give 5 validation row(s) at data.split.validation_size 0.05, fewer than "
                    "data.split.min_validation_rows (8)")
    assert too_small_note(12, 8, SplitConfig(validation_size=8)) == \
        "12 training rows are too few to give 8 of them to validation"
    assert too_small_note(200, 10, SplitConfig()) is None
    result = split_rows(filtered(tmp_path / "a", questions(60)), SplitConfig(eval_size=10), NO_LEAK_CHECK,
                        Storage.local(tmp_path / "store"), 1)
    assert result.validation is None and result.train.rows == 50
    assert "fewer than data.split.min_validation_rows (8): no validation split, so no validation curve" in result.validation_note
