"""tokenize.max_length: auto, as pure decisions over token-length distributions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from adapterflow.tokenization.lengths import (
    LENGTH_MULTIPLE,
    LengthChoice,
    auto_max_length,
    choose_max_length,
    length_percentiles,
    model_context,
)
from schemas.tokenize import TokenizeConfig


def test_auto_takes_the_shortest_multiple_of_64_holding_the_coverage() -> None:
    lengths = np.arange(1, 1001)  # one row of each length 1..1000
    assert auto_max_length(lengths, 0.99, 4096, None) == LengthChoice(1024, "coverage")  # 990 fit -> 1024
    assert auto_max_length(lengths, 0.5, 4096, None) == LengthChoice(512, "coverage")  # 500 -> 512
    assert auto_max_length(lengths, 1.0, 4096, None) == LengthChoice(1024, "coverage")  # the longest, 1000
    assert auto_max_length(np.full(50, 10), 0.99, 4096, None) == LengthChoice(LENGTH_MULTIPLE, "coverage")


@pytest.mark.parametrize("coverage", [0.9, 0.95, 0.98, 0.99, 0.995])
def test_auto_covers_the_share_and_no_shorter_multiple_would(coverage: float) -> None:
    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(40, 300, 950), rng.integers(300, 3000, 50)])  # a long tail
    chosen = auto_max_length(lengths, coverage, 8192, None).max_length
    assert chosen % LENGTH_MULTIPLE == 0
    assert (lengths <= chosen).mean() >= coverage
    assert (lengths <= chosen - LENGTH_MULTIPLE).mean() < coverage


def test_auto_is_capped_by_the_limit_and_the_models_context() -> None:
    lengths = np.arange(1, 5001)
    assert auto_max_length(lengths, 0.99, 4096, None) == LengthChoice(4096, "limit")
    assert auto_max_length(lengths, 0.99, 4096, 2048) == LengthChoice(2048, "context")
    assert auto_max_length(lengths, 0.99, 4096, 8192) == LengthChoice(4096, "limit")
    assert auto_max_length(np.arange(1, 101), 0.99, 4096, 2048) == LengthChoice(128, "coverage")


def test_fixed_lengths_and_pretrain_chunks_need_no_measuring() -> None:
    assert choose_max_length(TokenizeConfig(max_length=512), "sft", 2048, None) == LengthChoice(512, "fixed")
    assert choose_max_length(TokenizeConfig(), "pretrain", 8192, None) == LengthChoice(1024, "pretrain")
    assert choose_max_length(TokenizeConfig(), "pretrain", 512, None).max_length == 512
    assert choose_max_length(TokenizeConfig(max_length_limit=256), "pretrain", None, None).max_length == 256
    config = TokenizeConfig(length_coverage=0.9)
    assert choose_max_length(config, "classification", 512, np.arange(1, 101)).max_length == 128


def test_percentiles_and_the_models_context(tmp_path: Path) -> None:
    stats = length_percentiles(np.arange(1, 101))
    assert stats["p50"] == pytest.approx(50.5) and stats["p99"] == pytest.approx(99.01) and stats["max"] == 100
    assert length_percentiles(np.zeros(0)) == {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    assert model_context(tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps({"n_positions": 1024}))
    assert model_context(tmp_path) == 1024
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 8192, "n_positions": 1024}))
    assert model_context(tmp_path) == 8192
