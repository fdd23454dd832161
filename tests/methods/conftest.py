"""Shared fixtures of the method tests: tokenized splits per task on tiny models, method configs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from adapterflow.core.home import Home
from adapterflow.data.splitting import split_rows
from adapterflow.models.base import weights_sha256
from adapterflow.storage.records import BaseModelRef, TokenizedData
from adapterflow.storage.store import Storage
from schemas.data import LeakageConfig, SplitConfig
from schemas.method import Method, MethodVariant
from schemas.tokenize import TokenizeConfig
from schemas.training import TrainingConfig
from tasks.tokenize import tokenize_splits
from tests.tasks.helpers import filtered, questions
from tests.tiny_model import build_tiny_classifier, build_tiny_model

LEARNING_RATES = {"full": 2e-3, "freeze": 2e-3, "prompt": 5e-2, "prefix": 2e-2, "ptuning": 2e-2}
CLASSIFIER_LEARNING_RATES = {"prompt": 1e-2, "ptuning": 5e-3, "lora": 3e-3, "qlora": 3e-3}  # the shared rate also drives the new head


@dataclass
class Prepared:
    base: BaseModelRef
    tokenized: TokenizedData
    wide_base: BaseModelRef  # same tokenizer, hidden size 64: bitsandbytes quantises in blocks of 64 on CPU


def classification_rows(count: int) -> list[dict]:
    """Questions and answers of the shared test rows, labelled by which of the two they are."""
    rows = questions(count)
    return [{"text": row["messages"][index]["content"], "label": label, "source": "s", "line": 2 * i + index}
            for i, row in enumerate(rows) for index, label in ((0, "question"), (1, "answer"))]


def pretrain_rows(count: int) -> list[dict]:
    return [{"text": f"{row['messages'][0]['content']}. {row['messages'][1]['content']}", "source": "s", "line": i}
            for i, row in enumerate(questions(count))]


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_classifier_dir: Path) -> dict[str, Prepared]:
    """Tokenized train/eval splits per task (made once for the session)."""
    folder = tmp_path_factory.mktemp("matrix")
    home = Home(folder / "home")
    home.cache.mkdir(parents=True)
    wide_llama = build_tiny_model(folder / "wide-llama", hidden=64)
    wide_bert = build_tiny_classifier(folder / "wide-bert", hidden=64)
    result = {}
    for task, rows, model_dir, wide_dir in (
        ("sft", questions(24), tiny_model_dir, wide_llama), ("pretrain", pretrain_rows(24), tiny_model_dir, wide_llama),
        ("classification", classification_rows(16), tiny_classifier_dir, wide_bert),
    ):
        # the real weights' hash: a registered version's base is checked against it on every load
        base = BaseModelRef(name=model_dir.name, path=str(model_dir), sha256=weights_sha256(model_dir, home))
        split = split_rows(filtered(folder / task, rows, task), SplitConfig(eval_size=0.2, max_eval_rows=None),
                           LeakageConfig(enabled=False), Storage.local(home.cache), 1)
        tokenized = tokenize_splits(split, base, TokenizeConfig(max_length=64), Storage.local(home.cache))
        wide = BaseModelRef(name="wide", path=str(wide_dir), sha256=weights_sha256(wide_dir, home))
        result[task] = Prepared(base, tokenized, wide)
    return result


def method_of(options: dict) -> MethodVariant:
    return TypeAdapter(Method).validate_python(options)


def training_for(method: MethodVariant, task: str) -> TrainingConfig:
    rates = LEARNING_RATES | (CLASSIFIER_LEARNING_RATES if task == "classification" else {})
    return TrainingConfig(max_steps=16, batch_size=4, learning_rate=rates.get(method.type, 1e-2),
                          logging_steps=4, precision="fp32", warmup_ratio=0.0, lr_scheduler="constant", seed=7)


