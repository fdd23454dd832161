"""Checkpoints: a training stopped mid-way goes on from its newest complete checkpoint and ends with the same
weights as one never stopped; incomplete checkpoints are ignored; only the newest K are kept; they are uploaded
while training goes on, one at a time, and an upload's error reaches the training."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from adapterflow.storage.records import BaseModelRef, TokenizedData
from adapterflow.storage.store import Storage
from adapterflow.training.checkpoints import (
    MARKER,
    CheckpointPlan,
    DurableCheckpoints,
    checkpoint_step,
    complete_steps,
    newest_checkpoint,
)
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


def test_checkpoints_upload_in_the_background_one_at_a_time_while_training_goes_on(
    setup: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    went_on = threading.Event()  # training finished a step after the one checkpoint 2 saved
    uploads: list[tuple[int, bool]] = []  # each checkpoint uploaded, and whether training went on meanwhile
    in_flight: list[str] = []
    original = AdapterflowTrainer.training_step

    def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001, ANN202
        if self.state.global_step == 3:
            went_on.set()
        return original(self, model, inputs, num_items_in_batch)

    def slow_upload(storage: Storage, folder: Path, kind: str, key: str, marker: str) -> None:
        in_flight.append(key)
        assert in_flight == [key], f"uploads in flight together: {in_flight}"
        # in place, the upload would hold training: the wait would time out instead
        uploads.append((checkpoint_step(folder.name), went_on.wait(timeout=30)))
        in_flight.remove(key)

    monkeypatch.setattr(AdapterflowTrainer, "training_step", training_step)
    monkeypatch.setattr(Storage, "upload", slow_upload)
    plan = CheckpointPlan(setup[0], "adapter-key", every_steps=2, keep=2)
    train(setup, tmp_path / "out", plan)
    assert uploads == [(2, True), (4, True), (6, True), (8, True)]  # the last one too, before training returned
    assert complete_steps(plan) == [6, 8]


def saved_checkpoint(plan: CheckpointPlan, callback: DurableCheckpoints, step: int) -> None:
    """What the Trainer does at a save: write the checkpoint's files, then call its callbacks."""
    (plan.local_root / f"checkpoint-{step}").mkdir(parents=True)
    callback.on_save(None, SimpleNamespace(global_step=step, is_world_process_zero=True), None)


def test_an_upload_error_is_raised_in_the_training_thread_and_only_logged_after_a_failed_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unreachable(storage: Storage, folder: Path, kind: str, key: str, marker: str) -> None:
        raise OSError(f"bucket unreachable: {key}")

    monkeypatch.setattr(Storage, "upload", unreachable)
    plan = CheckpointPlan(Storage.local(tmp_path / "store"), "adapter-key", every_steps=2, keep=2)
    callback = DurableCheckpoints(plan, None, [])
    saved_checkpoint(plan, callback, 2)  # returns: the upload fails in the background
    with pytest.raises(OSError, match="checkpoint-2"):
        saved_checkpoint(plan, callback, 4)  # the next save waits for it
    after_failure = DurableCheckpoints(plan, None, [])
    saved_checkpoint(plan, after_failure, 6)
    caplog.set_level(logging.WARNING, logger="adapterflow")
    after_failure.finish_after_failure()  # training's own error is the one raised
    assert "uploading the last checkpoint failed too: bucket unreachable: adapter-key/checkpoint-6" in caplog.text
    last = DurableCheckpoints(plan, None, [])
    saved_checkpoint(plan, last, 8)
    with pytest.raises(OSError, match="checkpoint-8"):
        last.finish()
