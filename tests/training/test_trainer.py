"""The Trainer set-up trains a tiny model: the loss goes down and only the adapter is saved; each training reports
its own peak memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapterflow.core.home import Home
from adapterflow.data.splitting import split_rows
from adapterflow.storage.records import BaseModelRef
from adapterflow.storage.store import Storage
from adapterflow.training.callbacks import peak_memory_mb
from adapterflow.training.trainer import reset_peak_memory, train_adapter
from schemas.data import LeakageConfig, SplitConfig
from schemas.method import LoraMethod
from schemas.tokenize import TokenizeConfig
from schemas.training import TrainingConfig
from tasks.tokenize import tokenize_splits
from tests.tasks.helpers import filtered, questions


def test_lora_training_lowers_the_loss_and_saves_only_the_adapter(tmp_path: Path, tiny_model_dir: Path) -> None:
    home = Home(tmp_path / "home")
    home.cache.mkdir(parents=True)
    base = BaseModelRef(name="tiny", path=str(tiny_model_dir), sha256="x")
    split = split_rows(filtered(tmp_path / "data", questions(24)), SplitConfig(eval_size=0.2, max_eval_rows=None),
                       LeakageConfig(enabled=False), Storage.local(home.cache), 1)
    tokenized = tokenize_splits(split, base, TokenizeConfig(max_length=64), Storage.local(home.cache))
    config = TrainingConfig(max_steps=20, batch_size=4, learning_rate=0.02, logging_steps=2, precision="fp32",
                            warmup_ratio=0.0, lr_scheduler="constant")
    outcome = train_adapter(Path(tokenized.uri), base, LoraMethod(type="lora", r=4), config, torch.device("cpu"),
                            "fp32", tmp_path / "out")
    losses = [entry["train/loss"] for entry in outcome.history]
    assert len(losses) == 11  # the first step, then every 2 steps
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    saved = {path.name for path in outcome.output_dir.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= saved
    assert "model.safetensors" not in saved
    assert 0 < outcome.metrics["train/trainable_share"] < 0.5
    assert outcome.metrics["train/tokens_per_second"] > 0 and 0 <= outcome.metrics["train/padding_share"] < 1


def test_lora_plus_gives_the_b_matrices_a_higher_learning_rate_and_keeps_weight_decay(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from adapterflow.methods.peft_methods import peft_config
    from adapterflow.training.hf_trainer import AdapterflowTrainer
    from adapterflow.training.trainer import training_arguments

    method = LoraMethod(type="lora", r=4, loraplus_lr_ratio=16)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), peft_config(method, "CAUSAL_LM", 10, ""))
    config = TrainingConfig(max_steps=1, weight_decay=0.1, precision="fp32")
    args = training_arguments(config, "fp32", torch.device("cpu"), tmp_path, learning_rate=1e-3, packed=True)
    trainer = AdapterflowTrainer(model=model, args=args, loraplus_lr_ratio=16)
    groups = trainer.create_optimizer().param_groups
    rates = {(group["lr"], group["weight_decay"]) for group in groups if group["params"]}
    assert (1e-3, 0.1) in rates and (1.6e-2, 0.1) in rates


def test_a_warm_start_continues_from_the_given_adapter_and_refuses_other_settings(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    import pytest
    from safetensors.torch import load_file

    from adapterflow.core.errors import AdapterflowError

    home = Home(tmp_path / "home")
    base = BaseModelRef(name="tiny", path=str(tiny_model_dir), sha256="x")
    split = split_rows(filtered(tmp_path / "data", questions(24)), SplitConfig(eval_size=0.2, max_eval_rows=None),
                       LeakageConfig(enabled=False), Storage.local(home.cache), 1)
    tokenized = Path(tokenize_splits(split, base, TokenizeConfig(max_length=64), Storage.local(home.cache)).uri)
    method, cpu = LoraMethod(type="lora", r=4), torch.device("cpu")
    trained = train_adapter(tokenized, base, method, TrainingConfig(max_steps=8, learning_rate=0.02, precision="fp32"),
                            cpu, "fp32", tmp_path / "first").output_dir
    # one step at a negligible learning rate: a warm start ends where it started, a fresh adapter does not
    barely = TrainingConfig(max_steps=1, learning_rate=1e-9, precision="fp32", warmup_ratio=0.0)
    warm = train_adapter(tokenized, base, method, barely, cpu, "fp32", tmp_path / "warm", init_from=str(trained))
    cold = train_adapter(tokenized, base, method, barely, cpu, "fp32", tmp_path / "cold")
    first, again, fresh = (load_file(str(folder / "adapter_model.safetensors"))
                           for folder in (trained, warm.output_dir, cold.output_dir))
    lora_b = [name for name in first if "lora_B" in name]
    assert lora_b and all(first[name].abs().max() > 0 for name in lora_b)  # the first run learned something
    assert max((first[name] - again[name]).abs().max().item() for name in first) < 1e-5
    assert max((first[name] - fresh[name]).abs().max().item() for name in lora_b) > 1e-3
    with pytest.raises(AdapterflowError, match="warm_start"):
        train_adapter(tokenized, base, LoraMethod(type="lora", r=8), barely, cpu, "fp32", tmp_path / "r8",
                      init_from=str(trained))


def test_a_non_finite_loss_stops_training_at_once_with_the_step_and_the_last_finite_loss(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch
) -> None:
    import pytest

    from adapterflow.core.errors import NumericalFault
    from adapterflow.training import hf_trainer as trainer_module

    home = Home(tmp_path / "home")
    home.cache.mkdir(parents=True)
    base = BaseModelRef(name="tiny", path=str(tiny_model_dir), sha256="x")
    split = split_rows(filtered(tmp_path / "data", questions(24)), SplitConfig(eval_size=0.2, max_eval_rows=None),
                       LeakageConfig(enabled=False), Storage.local(home.cache), 1)
    tokenized = tokenize_splits(split, base, TokenizeConfig(max_length=64), Storage.local(home.cache))
    calls = {"n": 0}
    real_loss = trainer_module.next_token_loss

    def loss_that_overflows_at_step_4(model, inputs, reduction):  # noqa: ANN001, ANN202
        calls["n"] += 1
        loss, count = real_loss(model, inputs, reduction=reduction)
        return (loss * float("inf") if calls["n"] == 4 else loss), count

    monkeypatch.setattr(trainer_module, "next_token_loss", loss_that_overflows_at_step_4)
    config = TrainingConfig(max_steps=10, batch_size=4, learning_rate=0.02, logging_steps=1, precision="fp32")
    with pytest.raises(NumericalFault) as fault:
        train_adapter(Path(tokenized.uri), base, LoraMethod(type="lora", r=4), config, torch.device("cpu"), "fp32",
                      tmp_path / "out")
    message = str(fault.value)
    assert "training stopped at optimizer step 4: the loss is inf; last finite logged loss" in message
    assert "at step 3" in message and "training.learning_rate, now 0.02" in message
    assert calls["n"] == 4  # not a step more
    assert not (tmp_path / "out" / "adapter").exists()  # nothing saved


def test_the_peak_memory_reported_after_a_reset_is_the_new_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    allocator = {"allocated": 0, "peak": 0}  # a CUDA caching allocator's statistics, played on the CPU

    def allocate(size: int) -> None:
        allocator["allocated"] += size
        allocator["peak"] = max(allocator["peak"], allocator["allocated"])

    def reset(device: torch.device) -> None:
        allocator["peak"] = allocator["allocated"]

    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: allocator["peak"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    cuda = torch.device("cuda")
    allocate(8 * 2**30)  # the attempt that ran out of memory
    allocate(-8 * 2**30)  # freed
    reset_peak_memory(cuda)
    allocate(2 * 2**30)  # the retry with half the micro-batch
    assert peak_memory_mb(cuda) == 2 * 1024


def test_resetting_the_peak_memory_on_cpu_touches_no_cuda_state(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cuda(device: torch.device) -> None:
        raise AssertionError("CUDA called on a CPU training")

    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", no_cuda)
    reset_peak_memory(torch.device("cpu"))
