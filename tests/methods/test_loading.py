"""Evaluation and serving load the base as the method trained it: 4-bit for QLoRA, the compute dtype otherwise."""

from __future__ import annotations

from pathlib import Path

import bitsandbytes as bnb
import mlflow
import pandas as pd
import torch
from mlflow.tracking import MlflowClient

from adapterflow.core.home import Home
from adapterflow.methods.memory import estimate_memory
from adapterflow.registry import register_adapter
from adapterflow.training.trainer import TrainingOutcome, train_adapter
from schemas.training import TrainingConfig
from tasks.evaluate import contenders, load_contender
from tests.conftest import run_in_home
from tests.methods.conftest import Prepared, method_of

CPU = torch.device("cpu")


def trained(options: dict, data: Prepared, base_path_of: str, folder: Path) -> TrainingOutcome:
    """Two bf16 steps of `options` on the tiny model (a cuda-like frozen base: bf16 on this CPU when it has bf16)."""
    base = data.wide_base if base_path_of == "wide" else data.base
    config = TrainingConfig(max_steps=2, batch_size=2, learning_rate=1e-3, logging_steps=1, warmup_ratio=0.0,
                            lr_scheduler="constant", seed=7)
    return train_adapter(Path(data.tokenized.uri), base, method_of(options), config, CPU, "bf16", folder,
                         base_dtype="bfloat16" if options["type"] == "lora" else "auto")


def weight_bytes(model: torch.nn.Module) -> int:
    return estimate_memory(model, tokens_per_micro_batch=1, precision="bf16", gradient_checkpointing=False,
                           optimizer="sgd", full_backward=True).weights


def test_a_qlora_adapter_is_evaluated_on_a_4bit_base_that_fits_its_training_estimate(
    prepared: dict[str, Prepared], tmp_path: Path,
) -> None:
    data = prepared["sft"]
    outcome = trained({"type": "qlora", "r": 2}, data, "wide", tmp_path / "run")
    base, candidate = contenders(data.wide_base, outcome.output_dir, None)
    for contender in (base, candidate):
        model = load_contender(contender, CPU).model
        assert any(isinstance(module, bnb.nn.Linear4bit) for module in model.modules()), contender.name
        # evaluation holds no more weights than the training estimate planned for
        assert weight_bytes(model) <= outcome.memory.weights, contender.name


def test_a_bf16_lora_is_evaluated_and_served_on_a_bf16_base(
    prepared: dict[str, Prepared], tmp_path: Path, home: Home,
) -> None:
    data = prepared["sft"]
    outcome = trained({"type": "lora", "r": 2}, data, "tiny", tmp_path / "run")
    base, candidate = contenders(data.base, outcome.output_dir, None)
    for contender in (base, candidate):
        model = load_contender(contender, CPU).model
        assert {p.dtype for name, p in model.named_parameters() if "lora_" not in name} == {torch.bfloat16}
    with run_in_home(home) as run:
        _, uri = register_adapter(MlflowClient(), run.info.run_id, "loading", str(outcome.output_dir), data.base,
                                  {"adapterflow.method": "lora"}, "bf16 lora")
    served = mlflow.pyfunc.load_model(uri)
    wrapped = served.unwrap_python_model()
    assert wrapped.precision == "bf16"
    assert {p.dtype for name, p in wrapped.model.named_parameters() if "lora_" not in name} == {torch.bfloat16}
    answers = served.predict(pd.DataFrame({"prompt": ["What does add return?"]}), params={"max_new_tokens": 3})
    assert len(answers["answer"]) == 1


def test_the_base_is_cached_apart_for_each_way_it_is_loaded(prepared: dict[str, Prepared], tmp_path: Path) -> None:
    data = prepared["sft"]
    in_bf16 = trained({"type": "lora", "r": 2}, data, "wide", tmp_path / "bf16")
    in_4bit = trained({"type": "qlora", "r": 2}, data, "wide", tmp_path / "4bit")
    assert contenders(data.wide_base, in_bf16.output_dir, None)[0].identity != \
        contenders(data.wide_base, in_4bit.output_dir, None)[0].identity
