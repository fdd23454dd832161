"""Tokenize stage: cached by content, invalidated by any change of data, tokenizer or settings."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from adapterflow.home import Home
from adapterflow.storage import Storage
from adapterflow.records import BaseModelRef
from schemas.data import LeakageConfig, SplitConfig
from schemas.tokenize import TokenizeConfig
from tasks.split import split_rows
from tasks.tokenize import tokenize_splits
from tests.tasks.helpers import filtered, questions


def test_tokenized_splits_are_cached_by_content(tmp_path: Path, tiny_model_dir: Path) -> None:
    home = Home(tmp_path / "home")
    home.cache.mkdir(parents=True)
    split = split_rows(filtered(tmp_path / "a", questions(40)), SplitConfig(eval_size=0.25, max_eval_rows=None),
                       LeakageConfig(enabled=False), Storage.local(home.cache), 1)
    base = BaseModelRef(name="tiny", path=str(tiny_model_dir), sha256="x")

    first = tokenize_splits(split, base, TokenizeConfig(max_length=64), Storage.local(home.cache))
    assert not first.skipped and (first.train_rows, first.eval_rows) == (30, 10)
    table = pq.read_table(Path(first.uri) / "train.parquet")
    assert table.num_rows == 30 and table.column_names == ["input_ids", "labels"]

    again = tokenize_splits(split, base, TokenizeConfig(max_length=64), Storage.local(home.cache))
    assert again.skipped and again.key == first.key and again.stats == first.stats

    shorter = tokenize_splits(split, base, TokenizeConfig(max_length=32), Storage.local(home.cache))
    other_template = tokenize_splits(split, base, TokenizeConfig(max_length=64, chat_template="chatml"), Storage.local(home.cache))
    prompted = tokenize_splits(split, base, TokenizeConfig(max_length=64, system_prompt="Be brief."), Storage.local(home.cache))
    assert len({first.key, shorter.key, prompted.key}) == 3
    # the tiny tokenizer already uses ChatML: the same template gives the same key
    assert other_template.key == first.key
