"""Forgetting: the general set loads offline, perplexity on it counts every token, the change is relative to base."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from adapterflow.core.errors import AdapterflowError
from adapterflow.evaluation.forgetting import (
    PACKAGED_GENERAL_SET,
    forgetting,
    general_perplexity,
    load_general_passages,
)
from tests.test_evaluation import UniformModel


class WordTokenizer:
    """One id per word, no special tokens: enough for perplexity."""

    pad_token_id = 0

    def __call__(self, texts: list[str], add_special_tokens: bool = True) -> dict:
        return {"input_ids": [[1 + len(word) for word in text.split()] for text in texts]}


def test_the_packaged_general_set_is_a_few_hundred_short_everyday_passages() -> None:
    passages = load_general_passages(None, 10_000)
    assert len(passages) == 206 and len(load_general_passages(None, 200)) == 200
    assert all(5 <= len(passage.split()) <= 40 for passage in passages)
    assert not any("def " in passage or "()" in passage for passage in passages)  # no code: not the demo's domain
    assert PACKAGED_GENERAL_SET.name == "general_english.txt"


def test_a_users_text_or_jsonl_file_replaces_it(tmp_path: Path) -> None:
    text = tmp_path / "general.txt"
    text.write_text("first passage\n\n  second passage  \nthird\n")
    assert load_general_passages(text, 2) == ["first passage", "second passage"]
    jsonl = tmp_path / "general.jsonl"
    jsonl.write_text(json.dumps({"text": "one"}) + "\n" + json.dumps({"text": "two", "id": 2}) + "\n")
    assert load_general_passages(jsonl, 10) == ["one", "two"]


def test_a_broken_general_set_is_a_user_error_naming_the_line_and_the_key(tmp_path: Path) -> None:
    broken = tmp_path / "general.jsonl"
    broken.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"body": "no text"}) + "\n")
    with pytest.raises(AdapterflowError, match="line 2") as raised:
        load_general_passages(broken, 10)
    assert "evaluation.general_set" in raised.value.hint
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(AdapterflowError, match="no passages"):
        load_general_passages(empty, 10)
    with pytest.raises(AdapterflowError, match="can't read"):
        load_general_passages(tmp_path / "missing.txt", 10)


def test_general_perplexity_scores_every_token_after_the_first() -> None:
    passages = ["a bb ccc", "dddd ee", "f"]  # the one-word passage has nothing to predict
    result = general_perplexity(UniformModel(40), WordTokenizer(), passages, 2, torch.device("cpu"), "fp32")
    assert math.isclose(result["general_perplexity"], 40, rel_tol=1e-5)
    assert math.isclose(result["general_loss"], math.log(40), rel_tol=1e-5)


def test_forgetting_is_the_relative_change_against_the_base_model() -> None:
    assert forgetting(10.0, 12.0) == pytest.approx(0.2)
    assert forgetting(10.0, 9.0) == pytest.approx(-0.1)
    assert forgetting(10.0, 10.0) == 0.0
