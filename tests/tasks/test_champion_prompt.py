"""Evaluate scores the champion as it is served: with the system prompt its registration recorded, not the run's."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import torch

from adapterflow.core.home import Home
from adapterflow.data.splitting import split_rows
from adapterflow.methods.artifacts import stage_with_prompting
from adapterflow.registry.client import ChampionRef
from adapterflow.storage.records import BaseModelRef, TokenizedData
from adapterflow.storage.store import Storage
from schemas import load_config
from schemas.data import LeakageConfig, SplitConfig
from schemas.tokenize import TokenizeConfig
from tasks.evaluate import Contender, champion_prompting, evaluate_contenders
from tasks.tokenize import examples_path, tokenize_eval_with_prompt, tokenize_splits
from tasks.train import train_resumably
from tests.conftest import tiny_config, write_config
from tests.tasks.helpers import filtered, questions

PROMPT_A = "You answer questions about modules and functions."
PROMPT_B = "Be brief and precise in every single reply you give."
MAX_LENGTH = 48


def label_tokens(tokenized: TokenizedData, storage: Storage) -> list[int]:
    return pq.read_table(examples_path(storage.fetch(tokenized.uri) / "eval.parquet")).column("label_tokens").to_pylist()


def test_eval_rows_retokenized_with_a_longer_prompt_keep_the_answer_tokens_of_the_runs_cut_rows(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    home = Home(tmp_path / "home")
    home.cache.mkdir(parents=True)
    storage = Storage.local(home.cache)
    base = BaseModelRef(name="tiny", path=str(tiny_model_dir), sha256="x")
    split = split_rows(filtered(tmp_path / "data", questions(32)), SplitConfig(eval_size=0.5, max_eval_rows=None),
                       LeakageConfig(enabled=False), storage, 1)
    config = TokenizeConfig(max_length=MAX_LENGTH, system_prompt="Short.")
    tokenized = tokenize_splits(split, base, config, storage)
    longer = tokenize_eval_with_prompt(split, base, config, tokenized, PROMPT_A * 2, storage)
    assert tokenized.stats["truncated_share"] > 0 and longer.eval_rows == tokenized.eval_rows
    assert label_tokens(longer, storage) == label_tokens(tokenized, storage)


def test_a_champion_is_scored_with_its_recorded_system_prompt_after_the_run_changes_it(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    home = Home(tmp_path / "home")
    home.cache.mkdir(parents=True)
    storage = Storage.local(home.cache)
    base = BaseModelRef(name="tiny", path=str(tiny_model_dir), sha256="x")
    split = split_rows(filtered(tmp_path / "data", questions(32)), SplitConfig(eval_size=0.25, max_eval_rows=None),
                       LeakageConfig(enabled=False), storage, 1)

    def run_config(system_prompt: str):  # noqa: ANN202 - the same run, only tokenize.system_prompt changed
        sections = {"tokenize": {"max_length": 128, "system_prompt": system_prompt},
                    "evaluation": {"batch_size": 8, "sample_generations": 2, "max_new_tokens": 6,
                                   "general_passages": 0}}
        return load_config(write_config(tmp_path, tiny_config(tiny_model_dir, **sections), f"{len(system_prompt)}.yaml"))

    config_a, config_b = run_config(PROMPT_A), run_config(PROMPT_B)
    tokenized_a = tokenize_splits(split, base, config_a.tokenize, storage)
    trained = train_resumably(Path(tokenized_a.uri), base, config_a, torch.device("cpu"), "fp32",
                              storage.staging_dir("train"), None, None, {"max_length": tokenized_a.max_length})
    registered = stage_with_prompting(trained.output_dir, tmp_path / "registered", PROMPT_A)  # as registration does
    champion = ChampionRef("1", str(registered), base.path, base.sha256)

    def champion_scored(prompting, tokenized, config) -> dict:  # noqa: ANN001
        contender = Contender("champion", base.path, "champion-" + tokenized.key, str(registered), prompting=prompting)
        return evaluate_contenders([contender], tokenized, split.eval, config, storage)["champion"]

    in_its_own_run = champion_scored(None, tokenized_a, config_a)
    tokenized_b = tokenize_splits(split, base, config_b.tokenize, storage)
    on_prompt_b = champion_scored(None, tokenized_b, config_b)  # what evaluate did before: the run's prompt
    own = champion_prompting(champion, split, base, config_b, tokenized_b, storage)
    assert own is not None and own.system_prompt == PROMPT_A and not own.tokenized.skipped
    assert own.described.startswith("sha256 ") and PROMPT_A not in own.described
    in_the_next_run = champion_scored(own, tokenized_b, config_b)

    loss = {name: result["metrics"]["loss"] for name, result in
            {"own run": in_its_own_run, "next run": in_the_next_run, "prompt B": on_prompt_b}.items()}
    assert loss["next run"] == loss["own run"]  # scored on prompts with A, as in training and serving
    assert loss["prompt B"] > loss["own run"]  # on B it would lose for the prompt, not for its weights
    assert in_the_next_run["answers"] == in_its_own_run["answers"]
    # a second retrain reuses the champion's eval rows from the store
    assert champion_prompting(champion, split, base, config_b, tokenized_b, storage).tokenized.skipped
    # a run with the champion's prompt scores it like the run's models
    assert champion_prompting(champion, split, base, config_a, tokenized_a, storage) is None
