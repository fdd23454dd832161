"""Tokenize stage: cached by content, invalidated by any change of data, tokenizer or settings; max_length
chosen from the training rows (auto), over-long examples truncated or dropped and counted."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

from adapterflow.core.home import Home
from adapterflow.data.splitting import split_rows
from adapterflow.storage.records import BaseModelRef, SplitResult
from adapterflow.storage.store import Storage
from adapterflow.tokenization.lengths import LENGTH_MULTIPLE, auto_max_length, length_percentiles
from schemas.data import LeakageConfig, SplitConfig
from schemas.pipeline import PipelineConfig
from schemas.tokenize import TokenizeConfig
from tasks.tokenize import tokenize_splits, tokenized_key
from tests.conftest import ASSETS
from tests.tasks.helpers import chat, filtered, questions


@pytest.fixture
def store(tmp_path: Path) -> Storage:
    home = Home(tmp_path / "home")
    home.cache.mkdir(parents=True)
    return Storage.local(home.cache)


@pytest.fixture
def base(tiny_model_dir: Path) -> BaseModelRef:
    return BaseModelRef(name="tiny", path=str(tiny_model_dir), sha256="x")


def varied(count: int) -> list[dict]:
    """Rows whose answers grow from a few words to a few hundred: a spread of token lengths."""
    return [chat(f"question {i} about function_{i}", " ".join("abcdefghij"[j % 10] for j in range(3 * i)) or "ok", i + 1)
            for i in range(count)]


def split_of(folder: Path, rows: list[dict], store: Storage) -> SplitResult:
    return split_rows(filtered(folder, rows), SplitConfig(eval_size=0.2, max_eval_rows=None),
                      LeakageConfig(enabled=False), store, 1)


def examples(uri: str, name: str = "train"):
    return pq.read_table(Path(uri) / f"{name}_examples.parquet").to_pandas()


def test_tokenized_splits_are_cached_by_content(tmp_path: Path, base: BaseModelRef, store: Storage) -> None:
    split = split_rows(filtered(tmp_path / "a", questions(40)), SplitConfig(eval_size=0.25, max_eval_rows=None),
                       LeakageConfig(enabled=False), store, 1)

    first = tokenize_splits(split, base, TokenizeConfig(max_length=64), store)
    assert not first.skipped and (first.train_rows, first.eval_rows) == (30, 10) and first.max_length == 64
    table = pq.read_table(Path(first.uri) / "train.parquet")
    assert table.num_rows == 30 and table.column_names == ["input_ids", "labels"]

    again = tokenize_splits(split, base, TokenizeConfig(max_length=64), store)
    assert again.skipped and again.key == first.key and again.stats == first.stats and again.max_length == 64

    shorter = tokenize_splits(split, base, TokenizeConfig(max_length=32), store)
    other_template = tokenize_splits(split, base, TokenizeConfig(max_length=64, chat_template="chatml"), store)
    prompted = tokenize_splits(split, base, TokenizeConfig(max_length=64, system_prompt="Be brief."), store)
    automatic = tokenize_splits(split, base, TokenizeConfig(), store)
    dropping = tokenize_splits(split, base, TokenizeConfig(max_length=32, overlong="drop"), store)
    assert len({first.key, shorter.key, prompted.key, automatic.key, dropping.key}) == 5
    # the tiny tokenizer already uses ChatML: the same template gives the same key
    assert other_template.key == first.key
    # auto's choice can be capped by the model's context: another context, another key
    assert tokenized_key(split, "tok", TokenizeConfig(), 1024) != tokenized_key(split, "tok", TokenizeConfig(), 2048)


def test_auto_max_length_covers_the_training_rows_and_is_recorded(tmp_path: Path, base: BaseModelRef,
                                                                   store: Storage) -> None:
    split = split_of(tmp_path / "a", varied(100), store)
    result = tokenize_splits(split, base, TokenizeConfig(), store)
    lengths = examples(result.uri)["length"].to_numpy()
    assert lengths.max() > 2 * lengths.min()  # a real spread, not one length
    assert result.max_length == auto_max_length(lengths, 0.99, 4096, 1024).max_length  # tiny model: context 1024
    assert result.max_length_rule == "coverage" and result.max_length % LENGTH_MULTIPLE == 0
    assert (lengths <= result.max_length).mean() >= 0.99
    assert {f"length_{name}": value for name, value in length_percentiles(lengths).items()}.items() <= result.stats.items()

    half = tokenize_splits(split, base, TokenizeConfig(length_coverage=0.5), store)
    assert half.max_length < result.max_length and half.stats["truncated_share"] > 0.3
    assert examples(half.uri)["tokens"].max() == half.max_length  # the choice is the length tokenized to

    capped = tokenize_splits(split, base, TokenizeConfig(max_length_limit=64), store)
    assert (capped.max_length, capped.max_length_rule) == (64, "limit")


def test_over_long_examples_are_truncated_or_dropped_and_counted(tmp_path: Path, base: BaseModelRef,
                                                                 store: Storage) -> None:
    split = split_of(tmp_path / "a", varied(60), store)
    truncated = tokenize_splits(split, base, TokenizeConfig(max_length=128), store)
    dropped = tokenize_splits(split, base, TokenizeConfig(max_length=128, overlong="drop"), store)
    per_example = [examples(truncated.uri, name) for name in ("train", "eval")]
    overlong = sum(int(frame["overlong"].sum()) for frame in per_example)
    total = sum(len(frame) for frame in per_example)
    assert 0 < overlong < total

    assert "tokenize.overlong" not in truncated.dropped and truncated.train_rows + truncated.eval_rows == total
    assert truncated.stats["truncated_share"] == pytest.approx(overlong / total)
    assert dropped.dropped == {"tokenize.overlong": overlong} and dropped.stats["truncated_share"] == 0
    assert dropped.train_rows + dropped.eval_rows == total - overlong
    kept = pq.read_table(Path(dropped.uri) / "train.parquet").column("input_ids").to_pylist()
    assert max(len(ids) for ids in kept) <= 128


def test_the_chosen_max_length_reaches_training(tmp_path: Path, base: BaseModelRef, store: Storage,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.train

    tokenized = tokenize_splits(split_of(tmp_path / "a", varied(40), store), base, TokenizeConfig(), store)
    seen = {}

    def fake_train(*args, **options):
        seen.update(options)
        return SimpleNamespace(metrics={"train/final_loss": 1.0}, history=[], stopped_early=None)

    monkeypatch.setattr(tasks.train, "train_adapter", fake_train)
    config = PipelineConfig(name="t", base_model=str(base.path), data={"sources": [{"path": str(ASSETS / "chat.jsonl")}]},
                            execution={"device": "cpu"})
    assert config.tokenize.max_length == "auto"
    tasks.train.train_or_reuse(tokenized, base, config, store, None)
    assert seen["max_length"] == tokenized.max_length and isinstance(tokenized.max_length, int)
    assert np.isfinite(tokenized.stats["length_p99"])


def test_the_stage_logs_the_length_distribution_and_the_choice(tmp_path: Path, home: Home, base: BaseModelRef,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from mlflow.tracking import MlflowClient

    from adapterflow.storage.records import RunContext
    from tasks.tokenize import tokenize

    client = MlflowClient()
    run = RunContext(run_name="r", run_dir=str(tmp_path), home=str(home.root),
                     mlflow_run_id=client.create_run(client.create_experiment("tokenize")).info.run_id,
                     experiment="tokenize", config_sha256="c", storage=str(home.cache))
    with caplog.at_level(logging.INFO, logger="adapterflow"):
        result = tokenize.fn(split_of(tmp_path / "a", varied(50), Storage.local(home.cache)), base, TokenizeConfig(), run)
    metrics = client.get_run(run.mlflow_run_id).data.metrics
    assert metrics["data/max_length"] == result.max_length
    assert {metrics[f"data/length_{name}"] for name in ("p50", "p95", "p99", "max")} == {
        result.stats[f"length_{name}"] for name in ("p50", "p95", "p99", "max")}
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"p99 {result.stats['length_p99']:.0f}" in logged
    assert f"max_length {result.max_length} (auto: the shortest multiple of 64 holding 0.99 of the training rows)" in logged
