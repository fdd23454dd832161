"""Checkpoints: a training stopped mid-way goes on from its newest complete checkpoint and ends with the same
weights as one never stopped; incomplete checkpoints are ignored; only the newest K are kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from adapterflow.storage.records import BaseModelRef, TokenizedData
from adapterflow.storage.store import Storage
from adapterflow.training.checkpoints import MARKER, CheckpointPlan, complete_steps, newest_checkpoint
from adapterflow.training.hf_trainer import AdapterflowTrainer
from adapterflow.training.trainer import train_adapter
from schemas.method import LoraMethod
from schemas.training import TrainingConfig
from tests.tasks.helpers import tokenized_questions

STEPS = 8


class Killed(Exception):
    """Stands for the process dying mid-training."""


@pytest.fixture
def setup(tmp_path: Path, tiny_model_dir: Path) -> tuple[Storage, BaseModelRef, TokenizedData]:
    return tokenized_questions(tmp_path, tiny_model_dir, rows=24, eval_size=0.2)


def train(setup: tuple, out: Path, plan: CheckpointPlan | None = None, resume_from: Path | None = None):  # noqa: ANN201
    storage, base, tokenized = setup
    # dropout and shuffling draw random numbers: equal weights need the RNG states and data position restored too
    config = TrainingConfig(max_steps=STEPS, batch_size=2, learning_rate=0.02, logging_steps=1, precision="fp32",
                            optimizer="adamw_torch", checkpoint_steps=2, keep_checkpoints=2)
    return train_adapter(Path(tokenized.uri), base, LoraMethod(type="lora", r=4, dropout=0.1), config,
                         torch.device("cpu"), "fp32", out, checkpoints=plan, resume_from=resume_from)


def kill_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    original = AdapterflowTrainer.training_step

    def dying(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001, ANN202
        if self.state.global_step == step:
            raise Killed(f"killed at step {step}")
        return original(self, model, inputs, num_items_in_batch)

    monkeypatch.setattr(AdapterflowTrainer, "training_step", dying)


def weights(outcome) -> bytes:  # noqa: ANN001
    return (outcome.output_dir / "adapter_model.safetensors").read_bytes()


def test_a_killed_training_resumes_from_its_newest_checkpoint_to_the_same_weights(
    setup: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = setup[0]
    uninterrupted = train(setup, tmp_path / "whole")
    plan = CheckpointPlan(storage, "adapter-key", every_steps=2, keep=2)
    with monkeypatch.context() as patch:
        kill_at_step(patch, 5)
        with pytest.raises(Killed):
            train(setup, tmp_path / "first", plan)
    assert complete_steps(plan) == [2, 4]  # the newest two, both complete
    resume_from = newest_checkpoint(plan)
    assert resume_from is not None and resume_from.name == "checkpoint-4"
    resumed = train(setup, tmp_path / "second", plan, resume_from)
    assert weights(resumed) == weights(uninterrupted)  # bitwise on CPU with fixed seeds
    # the curve carried over from the checkpoint: every step once, no gap
    assert [entry["step"] for entry in resumed.history] == list(range(1, STEPS + 1))
    assert [entry["train/loss"] for entry in resumed.history] == [e["train/loss"] for e in uninterrupted.history]


def test_only_the_newest_complete_checkpoints_are_kept_and_an_incomplete_one_is_ignored(
    setup: tuple, tmp_path: Path
) -> None:
    plan = CheckpointPlan(setup[0], "adapter-key", every_steps=2, keep=2)
    train(setup, tmp_path / "out", plan)
    assert complete_steps(plan) == [6, 8]
    assert not (plan.local_root / "checkpoint-2").exists()
    marker = json.loads((plan.local_root / "checkpoint-8" / MARKER).read_text())
    assert marker["step"] == 8
    # a crash while the Trainer wrote checkpoint-10: files but no marker
    torn = plan.local_root / "checkpoint-10"
    torn.mkdir()
    (torn / "adapter_model.safetensors").write_bytes(b"half a file")
    newest = newest_checkpoint(plan)
    assert newest is not None and newest.name == "checkpoint-8"
    assert not torn.exists()
