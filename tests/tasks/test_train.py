"""The train stage's recovery from running out of memory: half the micro-batch, twice the accumulation, on from
the newest checkpoint; or, when that is not allowed or possible, advice instead of a crash."""

from __future__ import annotations

import logging
import weakref
from pathlib import Path

import pytest
import torch

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.home import Home
from adapterflow.data.splitting import split_rows
from adapterflow.methods.memory_plan import halve_micro_batch
from adapterflow.storage.records import BaseModelRef
from adapterflow.storage.store import Storage
from adapterflow.training.hf_trainer import AdapterflowTrainer
from schemas import load_config
from schemas.data import LeakageConfig, SplitConfig
from schemas.tokenize import TokenizeConfig
from schemas.training import TrainingConfig
from tasks.tokenize import tokenize_splits
from adapterflow.training.trainer import TrainingOutOfMemory
from tasks.train import checkpoint_plan, train_resumably
from tests.conftest import tiny_config, write_config
from tests.tasks.helpers import filtered, questions


def test_halving_keeps_the_effective_batch_and_stops_at_one() -> None:
    halved = halve_micro_batch(TrainingConfig(batch_size=4, gradient_accumulation_steps=3))
    assert halved is not None and (halved.batch_size, halved.gradient_accumulation_steps) == (2, 6)
    odd = halve_micro_batch(TrainingConfig(batch_size=3))
    assert odd is not None and (odd.batch_size, odd.gradient_accumulation_steps) == (1, 3)
    assert halve_micro_batch(TrainingConfig(batch_size=1)) is None


def out_of_memory_with_batches_over(monkeypatch: pytest.MonkeyPatch, limit: int, after_step: int) -> list[int]:
    """Micro-batches larger than `limit` run out of memory once training is past `after_step`; returns the batch
    sizes of every step tried."""
    original = AdapterflowTrainer.training_step
    sizes: list[int] = []

    def limited(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001, ANN202
        sizes.append(self.args.per_device_train_batch_size)
        if self.state.global_step >= after_step and self.args.per_device_train_batch_size > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, model, inputs, num_items_in_batch)

    monkeypatch.setattr(AdapterflowTrainer, "training_step", limited)
    return sizes


def train_tiny(tmp_path: Path, tiny_model_dir: Path, **training: object):  # noqa: ANN201
    home = Home(tmp_path / "home")
    home.cache.mkdir(parents=True, exist_ok=True)
    storage = Storage.local(home.cache)
    base = BaseModelRef(name="tiny", path=str(tiny_model_dir), sha256="x")
    split = split_rows(filtered(tmp_path / "data", questions(24)), SplitConfig(eval_size=0.2, max_eval_rows=None),
                       LeakageConfig(enabled=False), storage, 1)
    tokenized = tokenize_splits(split, base, TokenizeConfig(max_length=64), storage)
    config = load_config(write_config(tmp_path, tiny_config(tiny_model_dir, training={
        "max_steps": 6, "batch_size": 4, "checkpoint_steps": 2, "logging_steps": 1, **training})))
    plan = checkpoint_plan(config.training, storage, "adapter-key")
    return train_resumably(Path(tokenized.uri), base, config, torch.device("cpu"), "fp32", storage.staging_dir("a"),
                           None, plan, {"max_length": 64})


def test_out_of_memory_halves_the_micro_batch_and_goes_on_from_the_newest_checkpoint(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapterflow")
    sizes = out_of_memory_with_batches_over(monkeypatch, limit=2, after_step=3)
    resets: list[int] = []  # how many steps had been tried when the peak memory statistics were reset
    monkeypatch.setattr("adapterflow.training.trainer.reset_peak_memory", lambda device: resets.append(len(sizes)))
    outcome = train_tiny(tmp_path, tiny_model_dir)
    assert outcome.metrics["train/steps"] == 6
    # steps 1-3 at 4 examples, the failed 4th, then from the checkpoint at step 2: 2 micro-batches of 2 per step
    assert sizes[:4] == [4, 4, 4, 4] and set(sizes[4:]) == {2} and len(sizes[4:]) == 2 * 4
    assert resets == [0, 4]  # each attempt reports its own peak memory
    assert "going on with 2 x 2 (the same effective batch)" in caplog.text
    assert "resuming training from its checkpoint at step 2" in caplog.text


def test_out_of_memory_without_fit_memory_ends_with_advice(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_of_memory_with_batches_over(monkeypatch, limit=0, after_step=0)
    with pytest.raises(AdapterflowError) as raised:
        train_tiny(tmp_path, tiny_model_dir, fit_memory=False)
    assert "training ran out of memory on cpu with batch_size 4 x 1 accumulation steps" in str(raised.value)
    assert "training.fit_memory: true" in raised.value.hint and "gradient_checkpointing" in raised.value.hint


def trained_examples(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, list[tuple[int, ...]]]]:
    """Records every micro-batch that trains: (its attempt's Trainer, its optimizer step, its examples' token ids)."""
    original = AdapterflowTrainer.training_step
    trained: list[tuple[int, int, list[tuple[int, ...]]]] = []

    def recording(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001, ANN202
        loss = original(self, model, inputs, num_items_in_batch)
        rows = [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
        trained.append((id(self), self.state.global_step + 1, rows))
        return loss

    monkeypatch.setattr(AdapterflowTrainer, "training_step", recording)
    return trained


def examples_in_order(trained: list[tuple[int, int, list[tuple[int, ...]]]]) -> list[tuple[int, ...]]:
    """The examples each optimizer step of the final weights trained on, step after step: a step a later attempt
    trained again (from its checkpoint) counts with that attempt's examples."""
    steps: dict[int, tuple[int, list[tuple[int, ...]]]] = {}
    for attempt, step, rows in trained:
        if step not in steps or steps[step][0] != attempt:
            steps[step] = (attempt, [])
        steps[step][1].extend(rows)
    return [row for step in sorted(steps) for row in steps[step][1]]


def test_examples_after_halving_and_resuming_are_those_of_an_uninterrupted_run(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # unpacked, batches grouped by length; 19 examples in batches of 4 are 5 steps an epoch: the out-of-memory at
    # step 7 goes on from the checkpoint at step 6, in the second epoch
    training = {"packing": False, "max_steps": 9}
    with monkeypatch.context() as patch:
        whole = trained_examples(patch)
        train_tiny(tmp_path / "whole", tiny_model_dir, **training)
    halved = trained_examples(monkeypatch)
    sizes = out_of_memory_with_batches_over(monkeypatch, limit=2, after_step=6)
    train_tiny(tmp_path / "halved", tiny_model_dir, **training)
    assert 2 in sizes  # it did run out of memory and go on with micro-batches of 2
    order = examples_in_order(whole)
    assert len(set(order[:19])) == 19 and len(order) == 19 + 4 * 4  # an epoch has every example once
    assert examples_in_order(halved) == order


class Attempt:
    """Stands for a failed attempt's Trainer: it holds the model's tensors and is part of a reference cycle."""

    def __init__(self) -> None:
        self.weights = torch.zeros(1024, 1024)
        self.cycle = self


def test_the_failed_attempts_memory_is_unreachable_before_the_cache_is_emptied_and_the_retry_starts(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write_config(tmp_path, tiny_config(tiny_model_dir)))
    alive_at: dict[str, bool] = {}
    kept: list[BaseException] = []  # stands for whatever holds on to the error (a log record, a debugger)
    held: list[weakref.ref] = []

    def step(attempt: Attempt) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def attempt(tokenized_dir, base, method, training, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if held:
            alive_at["retry"] = held[0]() is not None
            return "trained"
        failed = Attempt()
        held.append(weakref.ref(failed.weights))
        try:
            step(failed)
        except torch.OutOfMemoryError as error:
            oom = TrainingOutOfMemory(training)
            kept.append(oom)
            raise oom from error

    monkeypatch.setattr("tasks.train.train_adapter", attempt)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: alive_at.setdefault("empty_cache", held[0]() is not None))
    assert train_resumably(tmp_path, None, config, torch.device("cuda"), "bf16", tmp_path, None, None, {}) == "trained"
    # emptying the cache while the model is still referenced would return none of its memory to the GPU
    assert alive_at == {"empty_cache": False, "retry": False}
