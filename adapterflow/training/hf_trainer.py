"""The transformers Trainer as adapterflow trains with it: label-only loss, LoRA+ learning rates, a stop at the
first optimizer step whose loss or gradients diverged (fp16 overflow steps that the loss scaler skips are counted,
not faults), and token counts summed over data-parallel processes."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.distributed.tensor import DTensor
from transformers import Trainer, TrainerCallback, TrainingArguments

from adapterflow.core.errors import NumericalFault
from adapterflow.tokenization.collate import TokenCounter
from adapterflow.tokenization.packing import next_token_loss
from adapterflow.training.callbacks import SKIPPED_STEPS
from adapterflow.training.fused_loss import fused_next_token_loss

MIN_LOSS_SCALE = 1.0  # fp16: a loss scale below this means the gradients overflow unscaled (loss_scale_collapsed)


class AdapterflowTrainer(Trainer):
    """The transformers Trainer with a loss that projects only labelled positions onto the vocabulary, LoRA+
    learning rates, and a NumericalGuard that stops at the first diverged optimizer step.

    The projected loss works for padded and packed batches alike (packed ones carry position_ids and no
    attention mask); `fused_loss` computes it with Liger-Kernel's fused linear cross-entropy (training/fused_loss.py).
    Models that compute their own loss (classifiers, prompt learning, whose virtual tokens shift the positions, and
    AdaLoRA, whose loss adds a regulariser) keep the Trainer's loss.
    """

    def __init__(self, *args, projected_loss: bool = True, fused_loss: bool = False,  # noqa: ANN002
                 loraplus_lr_ratio: float | None = None, **kwargs) -> None:  # noqa: ANN003
        super().__init__(*args, **kwargs)
        self.projected_loss = projected_loss
        self.fused_loss = fused_loss
        self.loraplus_lr_ratio = loraplus_lr_ratio
        self.guard = NumericalGuard()
        self.add_callback(self.guard)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001 - Trainer API
        if not self.projected_loss:
            if "position_ids" in inputs:  # packed: with a cache, transformers would skip the per-example mask
                inputs = {**inputs, "use_cache": False}
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, count = (fused_next_token_loss if self.fused_loss else next_token_loss)(model, inputs, reduction="sum")
        # With gradient accumulation the Trainer passes the label count of all micro-batches of the step,
        # so every token weighs the same whatever micro-batch it is in.
        denominator = num_items_in_batch if num_items_in_batch is not None else count
        loss = loss / max(int(denominator), 1)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices and self.args.world_size > 1:
            # num_items_in_batch counts the labels of all processes, and DDP averages the gradients over them:
            # scale back up so that the step's gradient is the mean over every labelled token of the global batch
            loss = loss * self.args.world_size
        return (loss, None) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001 - Trainer API
        """The Trainer's step (forward and backward); the guard checks its loss at the optimizer step."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.guard.add_loss(loss)
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.accelerator.scaler is not None and "loss" in logs:  # fp16: how many steps the scaler skipped
            logs = {**logs, SKIPPED_STEPS: float(self.guard.skipped_steps)}
        super().log(logs, start_time)

    def create_optimizer(self, model=None):  # noqa: ANN001 - Trainer API
        if self.loraplus_lr_ratio is None or self.optimizer is not None:
            return super().create_optimizer(model)
        from peft.optimizers import create_loraplus_optimizer

        # LoRA+: the B matrices get loraplus_lr_ratio times the learning rate of the A matrices
        model = model or self.model
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
        optimizer_kwargs.pop("lr", None)
        self.optimizer = create_loraplus_optimizer(
            model=model, optimizer_cls=optimizer_cls, lr=self.args.learning_rate,
            loraplus_lr_ratio=self.loraplus_lr_ratio, loraplus_weight_decay=self.args.weight_decay, **optimizer_kwargs,
        )
        return self.optimizer


class NumericalGuard(TrainerCallback):
    """Stops training at the first optimizer step that diverged, reading the device once per optimizer step
    (micro-batches only add their loss up on the device).

    Without a loss scaler (bf16, fp32) it checks before the step, after clipping, while the weights are still
    sound: a non-finite loss or gradient is a fault. Under fp16 an overflowed gradient is the scaler's business:
    it skips the step and halves its scale. So there the guard checks after the step: a non-finite loss is still
    a fault (it is computed before scaling), a lower scale is a skipped step, counted, and a collapsed scale is a
    fault. Skips are told by the scale, not by accelerate's optimizer_step_was_skipped: that misses them with
    fused optimizers (the default adamw_torch_fused), whose step always runs and skips inside the kernel.
    """

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.scale: float | None = None  # fp16: the loss scale after the last step
        self.skipped_steps = 0
        self.skips_in_a_row = 0

    def add_loss(self, loss: torch.Tensor) -> None:
        self.losses.append(loss.detach())

    def on_train_begin(self, args: TrainingArguments, state: Any, control: Any, optimizer: Any = None,
                       **kwargs: Any) -> None:
        if optimizer.scaler is not None:  # the initial scale, or the one a resumed checkpoint restored
            self.scale = optimizer.scaler.get_scale()

    def on_pre_optimizer_step(self, args: TrainingArguments, state: Any, control: Any, model: Any = None,
                              optimizer: Any = None, **kwargs: Any) -> None:
        if optimizer.scaler is None:
            step_loss = self.step_loss()
            loss, finite = read_step(step_loss, gradients_finite(model, step_loss.device))
            self.stop_at(state, args, step_fault(loss, finite))

    def on_optimizer_step(self, args: TrainingArguments, state: Any, control: Any, optimizer: Any = None,
                          **kwargs: Any) -> None:
        if optimizer.scaler is None:
            return
        loss, _ = read_step(self.step_loss())
        self.stop_at(state, args, step_fault(loss, gradients_finite=True))
        scale = optimizer.scaler.get_scale()  # the host has just waited for the step: this read costs no wait
        skipped, self.scale = scale < self.scale, scale  # the scaler lowers its scale only when it skips
        self.skipped_steps += int(skipped)
        self.skips_in_a_row = self.skips_in_a_row + 1 if skipped else 0
        if loss_scale_collapsed(scale):
            self.stop_at(state, args, f"the fp16 loss scale fell to {scale:g} after {self.skips_in_a_row} skipped "
                                      "steps in a row (the gradients are NaN or overflow fp16 even unscaled)")

    def step_loss(self) -> torch.Tensor:
        """The optimizer step's loss, summed over its micro-batches on the device (non-finite if any of them is)."""
        loss, self.losses = torch.stack(self.losses).sum(), []
        return loss

    @staticmethod
    def stop_at(state: Any, args: TrainingArguments, what: str | None) -> None:
        if what is not None:
            raise numerical_fault(state.global_step + 1, what, state.log_history, args)


def gradients_finite(model: torch.nn.Module, device: torch.device) -> torch.Tensor:
    """Whether every gradient is finite, as a boolean tensor on `device` (no host sync). FSDP's sharded
    gradients are checked shard by shard: the process holding a bad shard stops, and the launch with it."""
    checks = [torch.ones((), dtype=torch.bool, device=device)]
    for parameter in model.parameters():
        if parameter.grad is not None:
            gradient = parameter.grad.to_local() if isinstance(parameter.grad, DTensor) else parameter.grad
            checks.append(torch.isfinite(gradient).all().to(device))
    return torch.stack(checks).all()


def read_step(loss: torch.Tensor, finite: torch.Tensor | None = None) -> tuple[float, bool]:
    """The step's loss and gradient check as Python values: the guard's one host sync per optimizer step.
    `finite` is None when the fp16 loss scaler checks the gradients itself."""
    if finite is None:
        return float(loss), True
    loss_value, finite_value = torch.stack([loss.float(), finite.float()]).tolist()
    return loss_value, finite_value == 1.0


def step_fault(loss: float, gradients_finite: bool) -> str | None:
    """What diverged in an optimizer step, or None. The loss is computed before any fp16 loss scaling, so a
    non-finite loss is a real divergence under every precision."""
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    if not gradients_finite:
        return f"a gradient is NaN or Inf (loss {loss:.4g})"
    return None


def loss_scale_collapsed(scale: float) -> bool:
    """Whether the fp16 loss scaler can no longer rescue the gradients.

    The scaler multiplies the loss by its scale before the backward pass, skips a step whose gradients overflow
    and halves the scale: an ordinary overflow costs a step or two. A scale below 1 means it has been shrinking
    gradients that overflow fp16 (or are NaN) on their own, which no scale cures: every later step would be
    skipped and the run would learn nothing. From the scaler's initial 65536 that takes 17 halvings more than
    doublings (it doubles after 2000 steps without overflow). DeepSpeed's fp16 stops at the same floor
    (min_loss_scale 1).
    """
    return scale < MIN_LOSS_SCALE


def numerical_fault(step: int, what: str, history: list[dict[str, float]], args: TrainingArguments) -> NumericalFault:
    """The error for a diverged step: where, what, the last finite loss, and what usually causes it."""
    logged = [(entry["step"], entry["loss"]) for entry in history if "loss" in entry and math.isfinite(entry["loss"])]
    last = f"last finite logged loss {logged[-1][1]:.4f} at step {logged[-1][0]}" if logged else "no finite loss logged yet"
    precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "fp32"
    return NumericalFault(
        f"training stopped at optimizer step {step}: {what}; {last}; nothing was saved or registered",
        hint=f"likely causes: a learning rate too high (training.learning_rate, now {args.learning_rate:g}), "
             f"{precision} overflow (training.precision: bf16 or fp32 instead of fp16), no gradient clipping "
             "(training.max_grad_norm), or extreme rows in the data",
    )


class GlobalTokenCount(TrainerCallback):
    """Sums the token counts of all processes at every log (all processes log at the same steps), so that
    tokens/s and the padding share describe the whole data-parallel run rather than one process."""

    def __init__(self, local: TokenCounter) -> None:
        self.local = local
        self.total = TokenCounter()

    def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.sync(args.device)

    def sync(self, device: torch.device) -> None:
        counts = torch.tensor([self.local.real, self.local.padded], dtype=torch.int64, device=device)
        torch.distributed.all_reduce(counts)
        self.total.real, self.total.padded = int(counts[0]), int(counts[1])
