"""The numerical-fault check: fp16 overflow steps that the loss scaler skips are counted, not faults; a non-finite
loss, a non-finite gradient without a scaler, or a collapsed loss scale stops training at the step, and the
device is read once per optimizer step, never per micro-batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from adapterflow.core.errors import NumericalFault
from adapterflow.training import hf_trainer
from adapterflow.training.hf_trainer import AdapterflowTrainer, NumericalGuard, loss_scale_collapsed, step_fault

CPU = torch.device("cpu")


@pytest.mark.parametrize(("loss", "finite", "expected"), [
    (2.5, True, None),
    (float("nan"), True, "the loss is nan"),
    (float("inf"), False, "the loss is inf"),  # the loss says more than the gradients it caused
    (2.5, False, "a gradient is NaN or Inf (loss 2.5)"),
])
def test_a_step_is_a_fault_for_a_non_finite_loss_or_gradient(loss: float, finite: bool, expected: str | None) -> None:
    assert step_fault(loss, finite) == expected


@pytest.mark.parametrize(("scale", "collapsed"), [(65536.0, False), (2.0, False), (1.0, False), (0.5, True)])
def test_the_loss_scale_collapses_below_one(scale: float, collapsed: bool) -> None:
    assert loss_scale_collapsed(scale) is collapsed


class FakeScaler:
    """A loss scaler whose scale the test sets, as torch's GradScaler.update sets it after each step."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def get_scale(self) -> float:
        return self.scale


def run_steps(guard: NumericalGuard, scaler: FakeScaler, scales: list[float], losses: list[float],
              model: torch.nn.Module | None = None) -> None:
    """fp16 optimizer steps as the Trainer drives the guard; the scaler ends step i at scales[i]."""
    optimizer = SimpleNamespace(scaler=scaler)
    args = SimpleNamespace(fp16=True, bf16=False, learning_rate=1e-3)
    state = SimpleNamespace(global_step=0, log_history=[{"step": 1, "loss": 3.0}])
    guard.on_train_begin(args, state, None, optimizer=optimizer)
    for scale, loss in zip(scales, losses, strict=True):
        guard.add_loss(torch.tensor(loss))
        guard.on_pre_optimizer_step(args, state, None, model=model or torch.nn.Linear(1, 1), optimizer=optimizer)
        scaler.scale = scale
        guard.on_optimizer_step(args, state, None, optimizer=optimizer)
        state.global_step += 1


def test_fp16_overflow_steps_are_counted_and_a_collapsed_scale_stops_at_its_step() -> None:
    guard, scaler = NumericalGuard(), FakeScaler(8.0)
    overflowed = torch.nn.Linear(1, 1)
    overflowed.weight.grad = torch.full((1, 1), float("inf"))  # scaled gradients are the scaler's business
    # skipped, fine, grown, then skipped until the scale falls below 1
    with pytest.raises(NumericalFault, match=r"optimizer step 7: the fp16 loss scale fell to 0\.5 after 4 skipped "
                                             r"steps in a row .*last finite logged loss 3\.0000 at step 1"):
        run_steps(guard, scaler, [4.0, 4.0, 8.0, 4.0, 2.0, 1.0, 0.5], [1.0] * 7, model=overflowed)
    assert guard.skipped_steps == 5  # the six steps before went on, four of them skipped


def test_under_fp16_a_non_finite_loss_is_still_a_fault() -> None:
    with pytest.raises(NumericalFault, match="optimizer step 2: the loss is nan"):
        run_steps(NumericalGuard(), FakeScaler(8.0), [8.0, 4.0], [1.0, float("nan")])


def tiny_trainer(model_dir: Path, out: Path, precision: str, steps: int, accumulation: int = 1,
                 callbacks: list | None = None) -> AdapterflowTrainer:
    """An AdapterflowTrainer over a tiny LoRA model and random token rows, set up as train_adapter sets it up."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from adapterflow.methods.peft_methods import peft_config
    from adapterflow.tokenization.collate import PadToLongest
    from adapterflow.training.trainer import training_arguments
    from schemas.method import LoraMethod
    from schemas.training import TrainingConfig

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    model = get_peft_model(base, peft_config(LoraMethod(type="lora", r=4), "CAUSAL_LM", steps, ""))
    rows = [{"input_ids": ids, "labels": ids} for ids in torch.randint(3, 400, (64, 12)).tolist()]
    config = TrainingConfig(max_steps=steps, batch_size=2, gradient_accumulation_steps=accumulation,
                            learning_rate=1e-3, logging_steps=1, precision=precision, warmup_ratio=0.0)
    args = training_arguments(config, precision, CPU, out, learning_rate=1e-3, packed=True)
    return AdapterflowTrainer(model=model, args=args, train_dataset=rows, data_collator=PadToLongest(0),
                              callbacks=callbacks)


def with_cpu_loss_scaler(trainer: AdapterflowTrainer, init_scale: float) -> AdapterflowTrainer:
    """Give the trainer the GradScaler that accelerate makes for fp16 on CUDA only: torch's GradScaler also runs
    on CPU, so the Trainer takes the very path it takes on a GPU (scaled backward, unscale, skip, update)."""
    trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    trainer.accelerator.native_amp = True
    return trainer


def altered_loss(when: Callable[[int], bool], alter: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """A next_token_loss whose loss goes through `alter` at the calls (micro-batches, from 1) that `when` picks."""
    real, calls = hf_trainer.next_token_loss, {"n": 0}

    def loss(model, inputs, reduction):  # noqa: ANN001, ANN202
        calls["n"] += 1
        value, count = real(model, inputs, reduction=reduction)
        return (alter(value) if when(calls["n"]) else value), count

    loss.calls = calls
    return loss


def test_an_fp16_overflow_step_is_skipped_and_logged_as_train_skipped_steps(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapterflow.tokenization.collate import TokenCounter
    from adapterflow.training.callbacks import ThroughputMetrics

    # a finite loss whose scaled gradients overflow at step 2 only: what fp16's scaler is there to skip
    monkeypatch.setattr(hf_trainer, "next_token_loss", altered_loss(lambda call: call == 2, lambda loss: loss * 1e34))
    metrics = ThroughputMetrics(TokenCounter(), CPU)
    trainer = with_cpu_loss_scaler(tiny_trainer(tiny_model_dir, tmp_path, "fp16", steps=4, callbacks=[metrics]), 2.0**8)
    trainer.train()
    assert trainer.guard.skipped_steps == 1 and trainer.accelerator.scaler.get_scale() == 2.0**7
    assert [entry["train/skipped_steps"] for entry in metrics.history] == [0.0, 1.0, 1.0, 1.0]


def test_fp16_gradients_that_stay_nan_stop_training_when_the_loss_scale_collapses(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    trainer = with_cpu_loss_scaler(tiny_trainer(tiny_model_dir, tmp_path, "fp16", steps=10), init_scale=4.0)
    lora = next(parameter for name, parameter in trainer.model.named_parameters() if "lora_B" in name)
    # from step 2 on one gradient is NaN whatever the scale: its skips halve the scale from 4 to 2, 1, 0.5
    lora.register_hook(lambda grad: grad * float("nan") if trainer.state.global_step >= 1 else grad)
    with pytest.raises(NumericalFault, match="optimizer step 4: the fp16 loss scale fell to 0.5 after 3 skipped"):
        trainer.train()


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_without_a_loss_scaler_a_non_finite_loss_stops_at_its_optimizer_step_before_the_update(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, precision: str
) -> None:
    loss = altered_loss(lambda call: call >= 6, lambda value: value * float("nan"))  # 6: in step 2 (4 per step)
    monkeypatch.setattr(hf_trainer, "next_token_loss", loss)
    trainer = tiny_trainer(tiny_model_dir, tmp_path, precision, steps=4, accumulation=4)
    with pytest.raises(NumericalFault, match="training stopped at optimizer step 2: the loss is nan; last finite "
                                             "logged loss [0-9.]+ at step 1"):
        trainer.train()
    assert loss.calls["n"] == 8  # the step's micro-batches, not one more
    assert all(torch.isfinite(parameter).all() for parameter in trainer.model.parameters())  # never applied


def test_without_a_loss_scaler_a_non_finite_gradient_stops_at_its_optimizer_step(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    trainer = tiny_trainer(tiny_model_dir, tmp_path, "bf16", steps=6)
    lora = next(parameter for name, parameter in trainer.model.named_parameters() if "lora_B" in name)
    lora.register_hook(lambda grad: grad * float("inf") if trainer.state.global_step == 2 else grad)
    with pytest.raises(NumericalFault, match="optimizer step 3: a gradient is NaN or Inf"):
        trainer.train()


def count_host_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the tensor-to-Python reads (each a device sync on CUDA) made while `reads["on"]` is 1."""
    reads = {"n": 0, "on": 0}
    for name in ("__bool__", "__float__", "__int__", "item", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(tensor, *args, _original=original, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            reads["n"] += reads["on"]
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


def test_the_check_reads_the_device_once_per_optimizer_step_and_never_per_micro_batch(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import Trainer

    checks, real_read = {"n": 0}, hf_trainer.read_step

    def read_step(*args):  # noqa: ANN002, ANN202
        checks["n"] += 1
        return real_read(*args)

    reads = count_host_reads(monkeypatch)
    parent_step, own_step = Trainer.training_step, AdapterflowTrainer.training_step

    def own(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - what adapterflow adds to a micro-batch
        reads["on"] = 1
        result = own_step(self, *args, **kwargs)
        reads["on"] = 0
        return result

    def parent(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - the Trainer's forward and backward
        reads["on"] = 0
        result = parent_step(self, *args, **kwargs)
        reads["on"] = 1
        return result

    monkeypatch.setattr(hf_trainer, "read_step", read_step)
    monkeypatch.setattr(AdapterflowTrainer, "training_step", own)
    monkeypatch.setattr(Trainer, "training_step", parent)
    trainer = tiny_trainer(tiny_model_dir, tmp_path, "fp32", steps=3, accumulation=4)
    trainer.train()
    assert trainer.state.global_step == 3
    assert reads["n"] == 0  # 12 micro-batches, no read among them
    assert checks["n"] == 3
