"""A sweep's probe: it gets the validation loss at its steps without changing what training learns, and stops
training where its report says so (never at the last step)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapterflow.storage.records import BaseModelRef, TokenizedData
from adapterflow.training.probe import HeldOutProbe, TrainingPruned
from adapterflow.training.trainer import train_adapter
from schemas.method import LoraMethod
from schemas.training import EarlyStoppingConfig, TrainingConfig
from tests.tasks.helpers import tokenized_questions


@pytest.fixture
def setup(tmp_path: Path, tiny_model_dir: Path) -> tuple[BaseModelRef, TokenizedData]:
    return tokenized_questions(tmp_path, tiny_model_dir, rows=28, eval_size=0.25, validation_rows=4)[1:]


def train(setup: tuple, out: Path, probe: HeldOutProbe | None = None):  # noqa: ANN201
    base, tokenized = setup
    # dropout draws random numbers at every step: a probe that consumed any would change the weights; early
    # stopping off: the last step's weights are compared
    config = TrainingConfig(max_steps=7, batch_size=2, learning_rate=0.02, logging_steps=1, precision="fp32",
                            optimizer="adamw_torch", checkpoint_steps=None,
                            early_stopping=EarlyStoppingConfig(enabled=False))
    return train_adapter(Path(tokenized.uri), base, LoraMethod(type="lora", r=4, dropout=0.1), config,
                         torch.device("cpu"), "fp32", out, probe=probe)


def adapter_weights(outcome) -> dict[str, torch.Tensor]:  # noqa: ANN001
    from safetensors.torch import load_file

    return load_file(str(outcome.output_dir / "adapter_model.safetensors"))


def test_the_probe_measures_at_its_steps_and_the_last_without_changing_the_weights(setup: tuple, tmp_path: Path) -> None:
    reported: list[tuple[int, float]] = []
    probe = HeldOutProbe(every_steps=3, report=lambda step, loss: reported.append((step, loss)) is None and False)
    probed = train(setup, tmp_path / "probed", probe)
    plain = train(setup, tmp_path / "plain")

    assert [step for step, _ in probe.history] == [3, 6, 7]
    assert reported == probe.history
    assert all(0 < loss < 20 for _, loss in probe.history)
    assert probed.metrics["train/steps"] == plain.metrics["train/steps"] == 7
    probed_weights, plain_weights = adapter_weights(probed), adapter_weights(plain)
    assert probed_weights.keys() == plain_weights.keys()
    for name, tensor in plain_weights.items():
        assert torch.equal(probed_weights[name], tensor), name


def test_a_probe_that_says_stop_prunes_training_there_but_never_at_the_last_step(setup: tuple, tmp_path: Path) -> None:
    with pytest.raises(TrainingPruned) as pruned:
        train(setup, tmp_path / "pruned", HeldOutProbe(every_steps=2, report=lambda step, loss: step >= 4))
    assert pruned.value.step == 4 and pruned.value.loss > 0
    assert not (tmp_path / "pruned" / "adapter").exists()  # nothing half-trained is saved

    last_only = HeldOutProbe(every_steps=100, report=lambda step, loss: True)
    outcome = train(setup, tmp_path / "complete", last_only)
    assert [step for step, _ in last_only.history] == [7]  # measured at the end, and the end always completes
    assert (outcome.output_dir / "adapter_model.safetensors").exists()
